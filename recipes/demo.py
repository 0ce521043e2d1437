"""The whole Slam pipeline on CPU in minutes, on the offline spoken demo corpus (data/demo, built by
recipes/make_demo_corpus.py): pretrain → evaluate → DPO → evaluate, then a results table (the demo benchmarks before
and after DPO, on voices never heard in training) and a loss / learning-rate plot.

Usage:
    python recipes/demo.py                                   # = make demo: ≈ 13 min on 2 CPU cores
    python recipes/demo.py --pretrain_max_steps 200 --dpo_max_steps 20 --output_dir outputs/demo-quick

Each stage is the recipe a user runs by hand (recipes/pretrain.py, recipes/evaluate.py, recipes/dpo.py), started as
its own process. Output in output_dir: pretrain/ and dpo/ (models), results.md, results.json, training.png.
"""

import os
import sys

from slam_recipes.errors import run_entry_point

RECIPES = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"tsc": 90.0, "sblimp": 75.0, "swuggy": 75.0}  # on held-out voices; chance is 50


def run_stage(name: str, script: str, *args: str) -> float:
    """Run one recipe as a subprocess; its failure ends the demo with its exit code. Returns seconds taken."""
    import subprocess
    import time

    command = [sys.executable, os.path.join(RECIPES, script), *args]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    code = subprocess.run(command).returncode
    if code:
        print(f"error: demo stage '{name}' failed with exit code {code}", file=sys.stderr)
        sys.exit(code)
    return time.perf_counter() - start


def main() -> None:
    import json

    from slam_recipes.configs import DemoArguments, parse_recipe_args
    from slam_recipes.reports import plot_training, read_log_history, results_table

    (args,) = parse_recipe_args((DemoArguments,))
    pretrained, tuned = os.path.join(args.output_dir, "pretrain"), os.path.join(args.output_dir, "dpo")
    pretrain_steps = ["--max_steps", str(args.pretrain_max_steps)] if args.pretrain_max_steps else []
    dpo_steps = ["--max_steps", str(args.dpo_max_steps)] if args.dpo_max_steps else []
    seed = ["--seed", str(args.seed)] if args.seed is not None else []
    again = ["--overwrite_output_dir", "true"]  # `make demo` replaces the previous demo run
    seconds = {
        "pretrain": run_stage(
            "pretrain", "pretrain.py", "--config", args.pretrain_config, "--output_dir", pretrained, *pretrain_steps,
            *seed, *again,
        ),
        "evaluate (before DPO)": run_stage(
            "evaluate before DPO", "evaluate.py", "--config", args.eval_config, "--model_name_or_path", pretrained
        ),
        "dpo": run_stage(
            "DPO", "dpo.py", "--config", args.dpo_config, "--model_name_or_path", pretrained, "--output_dir", tuned,
            *dpo_steps, *seed, *again,
        ),
        "evaluate (after DPO)": run_stage(
            "evaluate after DPO", "evaluate.py", "--config", args.eval_config, "--model_name_or_path", tuned
        ),
    }  # fmt: skip

    scores = {}
    for label, folder in (("before DPO", pretrained), ("after DPO", tuned)):
        with open(os.path.join(folder, "likelihood_eval.json")) as f:
            scores[label] = {name: result["score"] for name, result in json.load(f)["results"].items()}
    histories = {"pretraining": read_log_history(pretrained), "DPO": read_log_history(tuned)}
    margins = [e["rewards/margins"] for e in histories["DPO"] if "rewards/margins" in e]
    eval_margins = [e["eval_rewards/margins"] for e in histories["DPO"] if "eval_rewards/margins" in e]
    plot = plot_training(histories, os.path.join(args.output_dir, "training.png"))

    met = {m: scores["after DPO"].get(m, float("nan")) >= t for m, t in TARGETS.items()}
    table = results_table(scores, TARGETS)
    lines = [
        "# Demo results",
        "",
        "Pairwise likelihood benchmarks on voices held out of training (× 100; chance is 50).",
        "",
        table,
        "",
        f"DPO reward margin: last logged {margins[-1]:.3f} (train), {eval_margins[-1]:.3f} (eval)."
        if margins and eval_margins
        else "DPO reward margin: not logged.",
        "Targets met after DPO: " + ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in met.items()) + ".",
        "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; {sum(seconds.values()):.0f} s in all.",
        f"Loss and learning rate: {os.path.basename(plot)}.",
    ]  # fmt: skip
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    summary = {
        "scores": scores,
        "targets": TARGETS,
        "targets_met": met,
        "dpo_reward_margin": {"train": margins[-1] if margins else None, "eval": eval_margins[-1] if eval_margins else None},
        "seconds": seconds,
        "plot": plot,
    }  # fmt: skip
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n" + "\n".join(lines))
    print(f"\nWritten: {args.output_dir}/results.md, results.json, training.png")


if __name__ == "__main__":
    run_entry_point(main)
