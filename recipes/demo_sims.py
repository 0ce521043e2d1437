"""Interleaved speech-text training (SIMS) on CPU in minutes, on the offline spoken demo corpus (data/demo):
pretrain a tiny model on the demo stories as text, as speech and interleaved → score it on the speech-only demo
benchmarks and on topic StoryCloze across modalities (S2S, S2T, T2S, T2T), on voices never heard in training.

The base is a BPE text tokenizer trained on the demo's texts and the Slam demo's tiny Qwen2, extended with the 500
units and the <speech> / <text> markers (recipes/demo-sims). Pretraining has the Slam demo's budget (7 min 30 s) and
optimisation, so the two demos compare at equal budget (README: Interleaved speech-text pretraining).

Usage:
    python recipes/demo_sims.py                                  # = make demo-sims: ≈ 9 min on 2 CPU cores
    python recipes/demo_sims.py --pretrain_time_budget 00:15:00  # a longer pretraining
    python recipes/demo_sims.py --pretrain_max_steps 20 --output_dir outputs/demo-sims-quick

Each stage is the recipe a user runs by hand (recipes/pretrain.py, recipes/evaluate.py) with its own command line, run
in this process so that torch, transformers and TRL are imported once. Output in output_dir: pretrain/ (the model),
results.md, results.json, training.png.
"""

import os

from slam_recipes.errors import run_entry_point

RECIPES = os.path.dirname(os.path.abspath(__file__))
# On held-out voices; chance is 50. The cross-modal endings are scored given the prompt in the other modality.
TARGETS = {"tsc_cross_t2t": 75.0, "tsc_cross_s2t": 75.0}


def main() -> None:
    from slam_recipes.configs import SimsDemoArguments, parse_recipe_args
    from slam_recipes.demo.report import length_options, run_stage, write_sims_report

    (args,) = parse_recipe_args((SimsDemoArguments,))
    pretrained = os.path.join(args.output_dir, "pretrain")
    steps = length_options(args.pretrain_max_steps, args.pretrain_time_budget)
    seed = ["--seed", str(args.seed)] if args.seed is not None else []
    seconds = {
        "pretrain": run_stage(
            "pretrain", os.path.join(RECIPES, "pretrain.py"), "--config", args.pretrain_config,
            "--output_dir", pretrained, *steps, *seed, "--overwrite_output_dir", "true",
        ),
        "evaluate": run_stage(
            "evaluate", os.path.join(RECIPES, "evaluate.py"), "--config", args.eval_config,
            "--model_name_or_path", pretrained,
        ),
    }  # fmt: skip
    _, lines = write_sims_report(args.output_dir, pretrained, seconds, TARGETS)
    print("\n" + "\n".join(lines))
    print(f"\nWritten: {args.output_dir}/results.md, results.json, training.png")


if __name__ == "__main__":
    run_entry_point(main)
