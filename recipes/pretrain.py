"""Pretrain a speech language model on unit datasets: stage 1 of the Slam recipe.

Usage:
    # the paper's run: Qwen2.5-0.5B, TWIST init, 1×A5000, 23.5 h
    accelerate launch --config_file accelerate_configs/a5000_24h.yaml recipes/pretrain.py --config recipes/slam/pretrain.yaml

    # the scaled run: 2×A100, 48 h
    accelerate launch --config_file accelerate_configs/a100x2_48h.yaml recipes/pretrain.py --config recipes/slam_scaled/pretrain.yaml

    # CPU, minutes, on the data shipped in data/demo
    python recipes/pretrain.py --config recipes/demo/pretrain.yaml

Any recipe value can be overridden on the command line (CLI > YAML > default), e.g. `--time_budget 01:00:00`.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    import dataclasses

    from slam_recipes.configs import INTERLEAVING_FIELDS, DataArguments, parse_recipe_args, resolved_recipe
    from slam_recipes.training.arguments import PretrainConfig, PretrainModelArguments

    parsed = model_args, data_args, training_args = parse_recipe_args(
        (PretrainModelArguments, DataArguments, PretrainConfig)
    )

    from transformers import set_seed

    from slam_recipes import (
        UnitLMTrainer,
        build_callbacks,
        build_collator,
        build_pretraining_datasets,
        build_unit_lm,
        check_packing,
        check_vocab,
        load_or_build_tokenizer,
    )
    from slam_recipes.evaluation.likelihood import load_benchmarks
    from slam_recipes.modeling.unit_lm import build_peft_config, count_parameters, model_flops_per_token
    from slam_recipes.training.hub import check_trainer_push
    from slam_recipes.training.records import describe_run
    from slam_recipes.training.trainer import peak_flops_per_device, setup_logging, train_and_save

    setup_logging(training_args)
    set_seed(training_args.seed)
    training_args.check_output_dir()  # not into another run's folder
    check_trainer_push(training_args)  # token and target repo, before any time is spent

    # Data (prepared and cached before the time budget starts)
    if data_args.interleaved:  # SIMS: the text LM keeps its vocabulary and gains the units and markers
        from slam_recipes.training.interleaved import build_interleaved_pretraining

        model, tokenizer, train_dataset, eval_dataset, benchmarks = build_interleaved_pretraining(
            model_args, data_args, training_args
        )
    else:
        data_options = dataclasses.asdict(data_args)
        data_options.pop("pad_to_multiple_of")  # a collator option
        for name in INTERLEAVING_FIELDS:
            data_options.pop(name)
        with training_args.main_process_first(desc="unit dataset preparation"):
            train_dataset, eval_dataset = build_pretraining_datasets(
                **data_options, num_units=model_args.num_units, seed=training_args.seed
            )
            benchmarks = load_benchmarks(
                training_args.benchmarks, model_args.num_units, max_pairs=training_args.max_pairs
            )

        # Model
        model = build_unit_lm(model_args.model_name_or_path, **model_args.build_kwargs())
        tokenizer = load_or_build_tokenizer(
            model_args.model_name_or_path, model_args.num_units, model_args.tokenizer_name_or_path
        )
        check_vocab(tokenizer, model)
    check_packing(model, data_args.packing, model_args.attn_implementation)
    run_info = describe_run("pretraining", model_args, data_args, resolved_recipe(parsed), count_parameters(model))
    if model_args.use_peft:  # LoRA on the transformer; the new unit embeddings and head are trained in full
        from peft import get_peft_model

        model = get_peft_model(model, build_peft_config(model_args, model, train_embeddings=True))

    # Training
    trainer = UnitLMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=build_collator(data_args.packing, model_args.attn_implementation, data_args.pad_to_multiple_of),
        processing_class=tokenizer,
        callbacks=build_callbacks(training_args.callbacks, training_args),
        benchmarks=benchmarks,  # scored at every evaluation, logged as eval_<name>
        run_info=run_info,  # run_summary.json, recipe.yaml and the model card
        flops_per_token=model_flops_per_token(model, data_args.context_length),
        peak_flops=peak_flops_per_device(training_args.peak_tflops),
    )
    train_and_save(trainer, merge_adapters=model_args.peft_save == "merged")


if __name__ == "__main__":
    run_entry_point(main)
