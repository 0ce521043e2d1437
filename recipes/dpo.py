"""Align a pretrained speech LM with DPO on spoken preference pairs: stage 2 of the Slam recipe.

Usage:
    # the paper's run: 30 minutes of DPO on SpokenSwag after recipes/slam/pretrain.yaml
    accelerate launch --config_file accelerate_configs/a5000_24h.yaml recipes/dpo.py --config recipes/slam/dpo.yaml

    # CPU, about a minute, after `make pretrain` (the demo pretraining)
    python recipes/dpo.py --config recipes/demo/dpo.yaml

Any recipe value can be overridden on the command line (CLI > YAML > default), e.g. `--use_peft true`.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    import dataclasses

    from slam_recipes.configs import PreferenceDataArguments, parse_recipe_args, resolved_recipe
    from slam_recipes.training.arguments import ModelArguments, SlamDPOConfig

    parsed = parse_recipe_args((ModelArguments, PreferenceDataArguments, SlamDPOConfig))
    model_args, data_args, training_args = parsed

    from transformers import set_seed

    from slam_recipes import build_callbacks, build_unit_lm, check_vocab, load_or_build_tokenizer
    from slam_recipes.evaluation.likelihood import load_benchmarks
    from slam_recipes.modeling.unit_lm import build_peft_config, check_unit_lm, count_parameters, make_reference_model
    from slam_recipes.preference.pairs import build_preference_datasets
    from slam_recipes.training.hub import check_trainer_push
    from slam_recipes.training.records import describe_run
    from slam_recipes.training.trainer import UnitDPOTrainer, setup_logging, train_and_save

    setup_logging(training_args)
    set_seed(training_args.seed)
    training_args.check_output_dir()  # not into another run's folder
    check_trainer_push(training_args)  # token and target repo, before any time is spent

    # Data (filtered, validated and cached before the time budget starts)
    with training_args.main_process_first(desc="preference data preparation"):
        train_dataset, eval_dataset = build_preference_datasets(
            **dataclasses.asdict(data_args), num_units=model_args.num_units, seed=training_args.seed
        )
        benchmarks = load_benchmarks(training_args.benchmarks, model_args.num_units, max_pairs=training_args.max_pairs)

    # Model: the pretrained speech LM, and a frozen copy of it as the reference (none with PEFT: the reference is
    # the base with adapters disabled; none with precomputed reference log-probs: they come from the policy at start)
    check_unit_lm(model_args.model_name_or_path, model_args.num_units)
    model = build_unit_lm(model_args.model_name_or_path, **model_args.build_kwargs())
    tokenizer = load_or_build_tokenizer(
        model_args.model_name_or_path, model_args.num_units, model_args.tokenizer_name_or_path
    )
    check_vocab(tokenizer, model)
    run_info = describe_run(
        "DPO", model_args, data_args, resolved_recipe(parsed), count_parameters(model), training_args.max_length
    )
    needs_reference = not (model_args.use_peft or training_args.precompute_ref_log_probs)
    ref_model = make_reference_model(model) if needs_reference else None
    peft_config = build_peft_config(model_args)

    # Training
    trainer = UnitDPOTrainer(
        model=model,
        ref_model=ref_model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=build_callbacks(training_args.callbacks, training_args),
        peft_config=peft_config,
        benchmarks=benchmarks,  # scored at every evaluation, logged as eval_<name>
        run_info=run_info,  # run_summary.json, recipe.yaml and the model card
    )
    train_and_save(trainer, merge_adapters=model_args.peft_save == "merged")


if __name__ == "__main__":
    run_entry_point(main)
