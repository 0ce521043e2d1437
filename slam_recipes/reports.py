"""Run reports: training curves (loss and learning rate) as a PNG, and the demo's results table."""

from __future__ import annotations

import json
import math
import os


def read_log_history(output_dir: str) -> list[dict]:
    """The Trainer's `log_history` from `<output_dir>/trainer_state.json` (written at the end of training)."""
    path = os.path.join(output_dir, "trainer_state.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no trainer state; did the run finish?")
    with open(path) as f:
        return json.load(f)["log_history"]


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of every log entry that holds `key` with a finite value."""
    points = [(entry["step"], float(entry[key])) for entry in history if key in entry and "step" in entry]
    points = [(s, v) for s, v in points if math.isfinite(v)]
    return [s for s, _ in points], [v for _, v in points]


def plot_training(runs: dict[str, list[dict]], path: str) -> str:
    """One column per run (e.g. {"pretraining": history, "DPO": history}): the training loss and, when logged, the
    evaluation loss over steps, with the learning rate on a second axis. Written as a PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for ax, (name, history) in zip(axes[0], runs.items(), strict=True):
        ax.plot(*series(history, "loss"), label="train loss", color="tab:blue")
        steps, values = series(history, "eval_loss")
        if steps:
            ax.plot(steps, values, "o-", label="eval loss", color="tab:orange")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        rate = ax.twinx()
        rate.plot(*series(history, "learning_rate"), color="tab:green", linestyle="--", label="learning rate")
        rate.set_ylabel("learning rate")
        rate.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        lines = ax.get_legend_handles_labels()
        more = rate.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


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
