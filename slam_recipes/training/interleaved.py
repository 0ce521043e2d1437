"""Interleaved speech-text pretraining (SIMS) set up from a pretraining recipe's parsed arguments: the extended text
LM and its packed datasets, for `recipes/pretrain.py` with `interleaved: true`."""

from __future__ import annotations

import dataclasses

from slam_recipes.configs import INTERLEAVING_FIELDS
from slam_recipes.errors import ConfigError

# Data options of unit-only pretraining (`build_pretraining_datasets`) that interleaved sources do not use.
UNIT_ONLY_OPTIONS = ("units_column", "dedup", "add_bos_eos", "min_units", "max_units", "pad_to_multiple_of")


def build_interleaved_pretraining(model_args, data_args, training_args):
    """(model, tokenizer, train, eval, benchmarks) for interleaved pretraining: the base LM with its own tokenizer,
    extended by the units and markers (`modeling.interleaved.build_interleaved_lm`; with `twist_init: false`, its
    architecture with random weights); the recipe's sources read by their columns, interleaved, mixed and packed
    (`data.interleaving.build_interleaved_datasets`), prepared on the main process first; and the recipe's
    speech-only `benchmarks`, framed as the model's speech-only rows
    (`evaluation.cross_modal.speech_benchmarks_for_interleaved`). Raises ConfigError for options an interleaved model
    does not take yet: model_config_overrides and rope_theta."""
    from slam_recipes.data.interleaving import build_interleaved_datasets
    from slam_recipes.evaluation.cross_modal import speech_benchmarks_for_interleaved
    from slam_recipes.evaluation.likelihood import load_benchmarks
    from slam_recipes.modeling.interleaved import build_interleaved_lm

    if model_args.model_config_overrides or model_args.rope_theta is not None:
        raise ConfigError("model_config_overrides and rope_theta are not applied to an interleaved model yet")
    benchmarks = load_benchmarks(training_args.benchmarks, model_args.num_units, max_pairs=training_args.max_pairs)
    kwargs = model_args.build_kwargs()
    loading = {key: kwargs.get(key) for key in ("dtype", "attn_implementation", "revision")}
    model, tokenizer, vocab = build_interleaved_lm(
        model_args.model_name_or_path, model_args.num_units, pretrained=model_args.twist_init, **loading
    )
    options = dataclasses.asdict(data_args)
    sources = {k: v for k, v in options.items() if k not in UNIT_ONLY_OPTIONS and k not in INTERLEAVING_FIELDS}
    with training_args.main_process_first(desc="interleaved dataset preparation"):
        train, evaluation = build_interleaved_datasets(
            **sources,
            tokenizer=tokenizer,
            vocab=vocab,
            frame_rate=data_args.interleave_frame_rate,
            mean_span=data_args.interleave_mean_span,
            fraction=data_args.interleave_fraction,
            text_column=data_args.text_column,
            seed=training_args.seed,
        )
    return model, tokenizer, train, evaluation, speech_benchmarks_for_interleaved(benchmarks, tokenizer, vocab)
