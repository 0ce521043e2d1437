"""Spoken preference pairs for DPO (SpokenSwag-style): load, validate, filter repetitive pairs, format for TRL.

Rows carry `prompt`, `chosen` and `rejected` as units, in any form the pretraining loader accepts (integer lists,
slamkit `audio_repr` strings, slamkit features dicts). They are turned into unit strings that TRL's DPOTrainer
tokenizes with the unit tokenizer, exactly as in pretraining: the prompt is `<S> units` (BOS, no EOS) and each
completion is `units <S>` (EOS). SpokenSwag's text columns are kept when present.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from slam_recipes.configs import check_auto_bleu
from slam_recipes.data.sources import (
    as_entry,
    as_mixture,
    check_units_column,
    load_entry,
    load_train_eval,
    read_units,
)
from slam_recipes.errors import DataError
from slam_recipes.evaluation.metrics import auto_bleu
from slam_recipes.units import BOS_TOKEN, EOS_TOKEN, units_to_string

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
TEXT_COLUMNS = ("prompt_text", "chosen_text", "rejected_text")


def _unit_strings(values: np.ndarray, offsets: np.ndarray, prefix: str, suffix: str) -> list[str]:
    return [prefix + units_to_string(values[a:b]) + suffix for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _preference_map(batch: pa.Table, indices: list[int], label: str, num_units: int, dedup: bool) -> pa.Table:
    first_row = indices[0] if len(indices) else 0
    out = {}
    for name, prefix, suffix in (("prompt", BOS_TOKEN, ""), ("chosen", "", EOS_TOKEN), ("rejected", "", EOS_TOKEN)):
        values, offsets = read_units(
            batch.column(name), num_units=num_units, label=f"{label} column {name!r}", first_row=first_row, dedup=dedup
        )
        out[name] = pa.array(_unit_strings(values, offsets, prefix, suffix), pa.string())
    for name in TEXT_COLUMNS:
        if name in batch.column_names:
            out[name] = batch.column(name)
    return pa.table(out)


def check_preference_columns(dataset, label: str) -> None:
    missing = [c for c in PREFERENCE_COLUMNS if c not in dataset.column_names]
    if missing:
        raise DataError(f"{label}: missing preference column(s) {missing} (found {dataset.column_names})")


def to_preference_strings(dataset, label: str, *, num_units: int, dedup: bool = False, num_proc: int | None = None):
    """Validate one loaded dataset and turn its units into the strings TRL tokenizes (text columns kept)."""
    check_preference_columns(dataset, label)
    for name in PREFERENCE_COLUMNS:
        check_units_column(dataset, name, label)
    return (
        dataset.with_format("arrow")
        .map(
            _preference_map,
            batched=True,
            batch_size=5_000,
            with_indices=True,
            remove_columns=dataset.column_names,
            fn_kwargs={"label": label, "num_units": num_units, "dedup": dedup},
            num_proc=num_proc,
            desc=f"Preference pairs → unit strings ({label})",
        )
        .with_format(None)
    )


def filter_repetitive(
    dataset,
    label: str,
    n: int = 2,
    threshold: float = 0.3,
    num_proc: int | None = None,
    tokenizer: str = "nltk",
):
    """The paper's repetition filter: drop a pair when the auto-BLEU of `prompt_text + " " + chosen_text` is
    ≥ `threshold` (slamkit/data/hf_dataset.py:127-133). auto-BLEU is `slam_recipes.evaluation.metrics.auto_bleu` with word
    n-grams of order `n`, words split by `tokenizer` ("nltk": the paper's; "normalized": lower-cased, no
    punctuation). A dataset without the text columns is a `DataError`; n < 1 or an unknown `tokenizer` a
    `ConfigError`."""
    check_auto_bleu(n, tokenizer)
    missing = [c for c in ("prompt_text", "chosen_text") if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{label}: auto_bleu_filter needs text column(s) {missing} (found {dataset.column_names}); "
            "set auto_bleu_filter: false for data without transcripts"
        )

    def keep(batch):
        return [
            auto_bleu(f"{prompt} {chosen}", n, tokenizer) < threshold
            for prompt, chosen in zip(batch["prompt_text"], batch["chosen_text"], strict=True)
        ]

    return dataset.filter(keep, batched=True, num_proc=num_proc, desc=f"auto-BLEU filter ({label})")


def load_preference_dataset(
    sources: Sequence[str | dict],
    *,
    num_units: int,
    split: str = "train",
    config_name: str | None = None,
    own_split: bool = True,
    dedup: bool = False,
    auto_bleu_filter: bool = True,
    auto_bleu_n: int = 2,
    auto_bleu_threshold: float = 0.3,
    auto_bleu_tokenizer: str = "nltk",
    num_proc: int | None = None,
):
    """Load, filter (`filter_repetitive` with the `auto_bleu_*` options) and format preference pairs from every
    source (a path with `config_name`, or a mixture entry: see `slam_recipes.data.sources.load_entry`),
    concatenated."""
    from datasets import concatenate_datasets

    parts = []
    for source in sources:
        for label, dataset in load_entry(as_entry(source, config_name), split, own_split=own_split):
            check_preference_columns(dataset, label)  # before the text columns the filter needs
            if auto_bleu_filter:
                dataset = filter_repetitive(
                    dataset, label, auto_bleu_n, auto_bleu_threshold, num_proc, tokenizer=auto_bleu_tokenizer
                )
            parts.append(to_preference_strings(dataset, label, num_units=num_units, dedup=dedup, num_proc=num_proc))
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def build_preference_datasets(
    dataset_name: Sequence[str] | None = None,
    *,
    datasets: Sequence[dict] | None = None,
    num_units: int,
    dataset_config: str | None = None,
    dataset_split: str = "train",
    validation_split: str | None = None,
    validation_fraction: float = 0.0,
    dedup: bool = False,
    auto_bleu_filter: bool = True,
    auto_bleu_n: int = 2,
    auto_bleu_threshold: float = 0.3,
    auto_bleu_tokenizer: str = "nltk",
    preprocessing_num_workers: int | None = None,
    seed: int = 42,
):
    """(train, eval or None) preference datasets from the recipe's options (names match PreferenceDataArguments):
    the sources as `dataset_name` or `datasets` (TRL's mixture entries, without fractions: pairs are concatenated)."""
    sources, ratios = as_mixture(dataset_name, datasets, dataset_config)
    if ratios is not None:
        raise DataError("datasets: fraction is for pretraining mixtures; preference pairs are concatenated")
    if auto_bleu_filter:
        check_auto_bleu(auto_bleu_n, auto_bleu_tokenizer)  # before any data is read
    common = dict(
        num_units=num_units,
        dedup=dedup,
        auto_bleu_filter=auto_bleu_filter,
        auto_bleu_n=auto_bleu_n,
        auto_bleu_threshold=auto_bleu_threshold,
        auto_bleu_tokenizer=auto_bleu_tokenizer,
        num_proc=preprocessing_num_workers,
    )
    train, evaluation = load_train_eval(
        lambda split, own_split: load_preference_dataset(sources, split=split, own_split=own_split, **common),
        dataset_split,
        validation_split,
        validation_fraction,
        seed,
    )
    if len(train) == 0:
        raise DataError(
            f"{[source['path'] for source in sources]}: no preference pairs left after the auto-BLEU filter"
        )
    return train, evaluation
