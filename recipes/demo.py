"""The whole Slam pipeline on CPU in minutes, on the offline spoken demo corpus (data/demo, built by
recipes/make_demo_corpus.py): pretrain → evaluate → DPO → evaluate, then a results table (the demo benchmarks before
and after DPO, on voices never heard in training) and a loss / learning-rate plot.

Like the paper's run, the training stages are sized by wall-clock budgets, not step counts (the recipes'
`time_budget`, with the learning-rate schedule fitted to it): 7 min 30 s of pretraining and 1 min 30 s of DPO,
about 10 min in all with the evaluations and start-up, on any 2-core machine; a faster one trains more steps in the
same time.

Usage:
    python recipes/demo.py                                   # = make demo: ≈ 10 min on 2 CPU cores
    python recipes/demo.py --pretrain_time_budget 00:15:00   # a longer pretraining
    python recipes/demo.py --pretrain_max_steps 20 --dpo_max_steps 4 --output_dir outputs/demo-quick

Each stage is the recipe a user runs by hand (recipes/pretrain.py, recipes/evaluate.py, recipes/dpo.py) with its own
command line, run in this process so that torch, transformers and TRL are imported once. Output in output_dir:
pretrain/ and dpo/ (models), results.md, results.json, training.png.
"""

import os

from slam_recipes.errors import run_entry_point

RECIPES = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"tsc": 90.0, "sblimp": 75.0, "swuggy": 75.0}  # on held-out voices; chance is 50


def main() -> None:
    from slam_recipes.configs import DemoArguments, parse_recipe_args
    from slam_recipes.demo.report import length_options, run_stage, write_demo_report

    (args,) = parse_recipe_args((DemoArguments,))
    pretrained, tuned = os.path.join(args.output_dir, "pretrain"), os.path.join(args.output_dir, "dpo")
    pretrain_steps = length_options(args.pretrain_max_steps, args.pretrain_time_budget)
    dpo_steps = length_options(args.dpo_max_steps, args.dpo_time_budget)
    seed = ["--seed", str(args.seed)] if args.seed is not None else []
    again = ["--overwrite_output_dir", "true"]  # `make demo` replaces the previous demo run
    pretrain, evaluate, dpo = (os.path.join(RECIPES, name) for name in ("pretrain.py", "evaluate.py", "dpo.py"))
    seconds = {
        "pretrain": run_stage(
            "pretrain", pretrain, "--config", args.pretrain_config, "--output_dir", pretrained, *pretrain_steps,
            *seed, *again,
        ),
        "evaluate (before DPO)": run_stage(
            "evaluate before DPO", evaluate, "--config", args.eval_config, "--model_name_or_path", pretrained
        ),
        "dpo": run_stage(
            "DPO", dpo, "--config", args.dpo_config, "--model_name_or_path", pretrained, "--output_dir", tuned,
            *dpo_steps, *seed, *again,
        ),
        "evaluate (after DPO)": run_stage(
            "evaluate after DPO", evaluate, "--config", args.eval_config, "--model_name_or_path", tuned
        ),
    }  # fmt: skip

    _, lines = write_demo_report(args.output_dir, pretrained, tuned, seconds, TARGETS)
    print("\n" + "\n".join(lines))
    print(f"\nWritten: {args.output_dir}/results.md, results.json, training.png")


if __name__ == "__main__":
    run_entry_point(main)
