"""The demo's report: the benchmarks before and after DPO against the demo's targets, with what each stage trained,
as results.md, results.json and training.png."""

from __future__ import annotations

import json
import os
import sys

from slam_recipes.files import atomic_write
from slam_recipes.training.records import plot_training, precision_text, read_log_history, read_run_summary


def run_script(script: str, *args: str) -> int:
    """`python <script> <args>` in this process: the script runs as `__main__` with that `sys.argv` (its own argument
    parsing, `run_entry_point` and exit code), but torch, transformers and TRL are not imported again (≈ 10 s per
    recipe on a 2-core CPU). Returns the exit code: the script's `sys.exit` code, or 0 when it returns; an exception
    it raises propagates. `sys.argv` is restored, and the script's objects are freed, either way."""
    import gc
    import runpy

    saved_argv, code = sys.argv, 0
    try:
        sys.argv = [script, *args]
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else int(exit_info.code is not None)
    finally:
        sys.argv = saved_argv
        gc.collect()
    return code


def run_stage(name: str, script: str, *args: str) -> float:
    """Run one recipe script as a stage of a demo (in this process, `run_script`); its failure ends the demo with its
    exit code. Returns the seconds it took."""
    import time

    print(f"\n=== {name}: {' '.join([script, *args])}", flush=True)
    start = time.perf_counter()
    code = run_script(script, *args)
    sys.stdout.flush()
    if code:
        print(f"error: demo stage '{name}' failed with exit code {code}", file=sys.stderr)
        sys.exit(code)
    return time.perf_counter() - start


def length_options(max_steps: int | None, time_budget: str | None) -> list[str]:
    """The command-line overrides a demo passes to a training stage: `--max_steps` and / or `--time_budget`, each
    only when set."""
    return (["--max_steps", str(max_steps)] if max_steps else []) + (
        ["--time_budget", time_budget] if time_budget else []
    )


def results_table(columns: dict[str, dict[str, float]], targets: dict[str, float] | None = None) -> str:
    """A markdown table: one row per metric, one column per model (e.g. before / after DPO), then the target."""
    targets = targets or {}
    metrics = list(dict.fromkeys(m for scores in columns.values() for m in scores))
    header = "| metric | " + " | ".join(columns) + (" | target |" if targets else " |")
    lines = [header, "|---" * (len(columns) + 1 + bool(targets)) + "|"]
    for metric in metrics:
        cells = [f"{scores[metric]:.1f}" if metric in scores else "—" for scores in columns.values()]
        target = [f"≥ {targets[metric]:g}" if metric in targets else ""] if targets else []
        lines.append(f"| {metric} | " + " | ".join(cells + target) + " |")
    return "\n".join(lines)


def write_demo_report(
    output_dir: str, pretrained: str, tuned: str, seconds: dict[str, float], targets: dict[str, float]
) -> tuple[dict, list[str]]:
    """The demo's report from its stages' folders (`pretrained`, `tuned`: each with likelihood_eval.json,
    trainer_state.json and run_summary.json): `results.md` (the benchmarks before / after DPO against `targets`, the
    DPO reward margin, stage times, steps and tokens trained, machine and precision), `results.json` and the loss /
    learning-rate plot `training.png`, all in `output_dir`. Returns (the results, the markdown lines)."""
    scores, runs = {}, {}
    for label, folder in (("before DPO", pretrained), ("after DPO", tuned)):
        with open(os.path.join(folder, "likelihood_eval.json")) as f:
            scores[label] = {name: result["score"] for name, result in json.load(f)["results"].items()}
    for stage, folder in (("pretraining", pretrained), ("DPO", tuned)):
        runs[stage] = read_run_summary(folder)
    histories = {"pretraining": read_log_history(pretrained), "DPO": read_log_history(tuned)}
    margins = {
        split: next((e[key] for e in reversed(histories["DPO"]) if key in e), None)
        for split, key in (("train", "rewards/margins"), ("eval", "eval_rewards/margins"))
    }
    plot = plot_training(histories, os.path.join(output_dir, "training.png"))
    met = {m: scores["after DPO"].get(m, float("nan")) >= t for m, t in targets.items()}
    hardware = runs["pretraining"]["hardware"]
    trained = "; ".join(
        f"{stage} {run['training']['steps']} steps, {run['training']['tokens_seen']:,} tokens in "
        f"{run['training']['wall_time_seconds']:.0f} s"
        + (" (stopped by its time budget)" if (run.get("budget") or {}).get("stopped_by_budget") else "")
        for stage, run in runs.items()
    )
    lines = [
        "# Demo results",
        "",
        "Pairwise likelihood benchmarks on voices held out of training (× 100; chance is 50).",
        "",
        results_table(scores, targets),
        "",
        f"DPO reward margin: last logged {margins['train']:.3f} (train), {margins['eval']:.3f} (eval)."
        if None not in margins.values()
        else "DPO reward margin: not logged.",
        "Targets met after DPO: " + ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in met.items()) + ".",
        "Stage times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + f"; {sum(seconds.values()):.0f} s in all.",
        f"Trained: {trained}.",
        f"Machine: {hardware['device']}; precision {precision_text(hardware)}.",
        f"Loss and learning rate: {os.path.basename(plot)}.",
    ]
    summary = {
        "scores": scores,
        "targets": targets,
        "targets_met": met,
        "dpo_reward_margin": margins,
        "seconds": seconds,
        "training": {stage: run["training"] | {"budget": run.get("budget")} for stage, run in runs.items()},
        "hardware": hardware,
        "plot": plot,
    }
    return write_results(output_dir, summary, lines)


def write_results(output_dir: str, summary: dict, lines: list[str]) -> tuple[dict, list[str]]:
    """`results.md` (the markdown `lines`) and `results.json` (`summary`) in `output_dir`; returns both."""
    with atomic_write(os.path.join(output_dir, "results.md")) as f:
        f.write("\n".join(lines) + "\n")
    with atomic_write(os.path.join(output_dir, "results.json")) as f:
        json.dump(summary, f, indent=2)
    return summary, lines


def write_sims_report(
    output_dir: str, pretrained: str, seconds: dict[str, float], targets: dict[str, float]
) -> tuple[dict, list[str]]:
    """The interleaved demo's report from its pretraining folder (`pretrained`: likelihood_eval.json,
    trainer_state.json, run_summary.json): `results.md` (the speech-only benchmarks, then each cross-modal direction,
    against `targets`; stage times, steps and tokens trained, machine and precision), `results.json` and the loss /
    learning-rate plot `training.png`, all in `output_dir`. Returns (the results, the markdown lines)."""
    with open(os.path.join(pretrained, "likelihood_eval.json")) as f:
        results = json.load(f)["results"]
    speech = {name: r["score"] for name, r in results.items() if "direction" not in r}
    labels = {name: f"{name} ({r['direction']})" for name, r in results.items() if "direction" in r}
    cross = {label: results[name]["score"] for name, label in labels.items()}
    run = read_run_summary(pretrained)
    plot = plot_training({"pretraining": read_log_history(pretrained)}, os.path.join(output_dir, "training.png"))
    met = {m: results.get(m, {}).get("score", float("nan")) >= t for m, t in targets.items()}
    training = run["training"]
    lines = [
        "# Interleaved (SIMS) demo results",
        "",
        "Pairwise likelihood benchmarks on voices held out of training (× 100; chance is 50).",
        "",
        "Speech only:",
        "",
        results_table({"score": speech}),
        "",
        "Topic StoryCloze across modalities (prompt → ending; the ending's tokens scored):",
        "",
        results_table({"score": cross}, {labels[m]: t for m, t in targets.items() if m in labels}),
        "",
        "Targets met: " + ", ".join(f"{labels.get(m, m)} {'yes' if ok else 'NO'}" for m, ok in met.items()) + ".",
        "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + f"; {sum(seconds.values()):.0f} s in all.",
        f"Trained: {training['steps']} steps, {training['tokens_seen']:,} tokens in "
        + f"{training['wall_time_seconds']:.0f} s"
        + (" (stopped by its time budget)." if (run.get("budget") or {}).get("stopped_by_budget") else "."),
        f"Machine: {run['hardware']['device']}; precision {precision_text(run['hardware'])}.",
        f"Loss and learning rate: {os.path.basename(plot)}.",
    ]  # fmt: skip
    summary = {
        "scores": {"speech": speech, "cross_modal": {m: results[m]["score"] for m in labels}},
        "targets": targets,
        "targets_met": met,
        "seconds": seconds,
        "training": training | {"budget": run.get("budget")},
        "hardware": run["hardware"],
        "plot": plot,
    }
    return write_results(output_dir, summary, lines)
