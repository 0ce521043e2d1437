"""The record of a training run, in its output folder: `run_summary.json` (what ran, on what, how fast, how far),
`recipe.yaml` (the resolved recipe) and `training.png` (loss and learning rate)."""

from __future__ import annotations

import json
import math
import os
import statistics

from slam_recipes.files import atomic_path, atomic_write

SUMMARY_FILE = "run_summary.json"
RECIPE_FILE = "recipe.yaml"
PLOT_FILE = "training.png"


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
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    return path


def precision_text(hardware: dict) -> str:
    """A run's precision from its run_summary.json `hardware`: `bf16`, or e.g. `fp32 (asked: bf16; this CPU has no
    AVX512-BF16 or AMX ...)` when the capability rule replaced what the recipe asked for; `—` when not recorded."""
    chosen, requested = hardware.get("precision"), hardware.get("precision_requested")
    if not chosen:
        return "—"
    if requested and requested != chosen:
        return f"{chosen} (asked: {requested}; {hardware.get('precision_reason')})"
    return chosen


# ---------------------------------------------------------------------------------------------------------------------
# The record of a training run: run_summary.json, recipe.yaml and training.png in its output folder
# ---------------------------------------------------------------------------------------------------------------------
def read_run_summary(folder: str | None) -> dict | None:
    """A local model folder's `run_summary.json`, or None (a Hub id, a text LM, a run from before it existed)."""
    path = os.path.join(folder, SUMMARY_FILE) if folder and os.path.isdir(folder) else None
    if path is None or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def describe_run(stage: str, model_args, data_args, recipe: dict, num_parameters: int, context_length=None) -> dict:
    """What a run is, known before it trains: the model's lineage, the unit tokenizer, the data and the recipe."""
    from slam_recipes.audio.tokenizer import recorded_unit_tokenizer

    pretraining = stage == "pretraining"
    parent = None if pretraining else read_run_summary(model_args.model_name_or_path)
    mixture = getattr(data_args, "datasets", None)
    sources = [entry["path"] for entry in mixture] if mixture else list(data_args.dataset_name or [])
    fractions = [entry.get("fraction") for entry in mixture or []]
    unit_tokenizer = (
        recorded_unit_tokenizer(sources)
        or (dict(model_args.unit_tokenizer) if model_args.unit_tokenizer else None)
        or (parent or {}).get("unit_tokenizer")
    )
    data = {
        "datasets": sources,
        "ratios": fractions if any(f is not None for f in fractions) else getattr(data_args, "dataset_ratios", None),
        "packing": getattr(data_args, "packing", None),
        "context_length": context_length or getattr(data_args, "context_length", None),
    }
    return {
        "stage": stage,
        "base_lm": (parent or {}).get("base_lm", model_args.model_name_or_path),
        "parent": None
        if pretraining
        else {"model": model_args.model_name_or_path, "stage": (parent or {}).get("stage", "a speech LM")},
        "model": {
            "model_name_or_path": model_args.model_name_or_path,
            "revision": model_args.model_revision,
            "twist_init": getattr(model_args, "twist_init", None),
            "num_units": model_args.num_units,
            "parameters": num_parameters,
        },
        "unit_tokenizer": unit_tokenizer,
        "data": {k: v for k, v in data.items() if v is not None},
        "recipe": recipe,
    }


def device_description(args) -> str:
    """The accelerator's name (e.g. "NVIDIA H100 80GB HBM3"), or the CPU's, e.g. "CPU: AMD EPYC (2 cores, AVX2, no
    native bf16)"."""
    import torch

    from slam_recipes.precision import cpu_capability

    if torch.cuda.is_available() and not getattr(args, "use_cpu", False):
        return torch.cuda.get_device_name()
    cpu = cpu_capability()
    bf16 = "native bf16" if cpu["native_bf16"] else "no native bf16"
    return f"CPU: {cpu['model']} ({os.cpu_count()} cores, {cpu['isa']}, {bf16})"


def run_summary(trainer, train_metrics: dict) -> dict:
    """The run's measured record: tokens seen, wall time, tokens/s, MFU, final losses, the time budget used.

    Tokens seen and wall time both span the whole run: from the first start, over every session of a resumed run
    (`sessions`), so tokens/s and MFU are those of the run, not inflated by a resume."""
    import time

    import torch
    import transformers
    import trl

    from slam_recipes.training.budget import TimeBudgetCallback, TrainingClockCallback
    from slam_recipes.training.trainer import peak_memory_gib

    state, args = trainer.state, trainer.args
    history = state.log_history
    tokens = int(state.num_input_tokens_seen)  # since the first start (restored with the checkpoint on resume)
    # ... so divided by the training time since the first start, over every session (see TrainingClockCallback)
    clock = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TrainingClockCallback)), None)
    runtime = clock.seconds() if clock is not None else float(train_metrics.get("train_runtime") or 0.0)
    tokens_per_second = tokens / runtime if runtime > 0 else None
    mfu = None
    if tokens_per_second and trainer.flops_per_token and trainer.peak_flops:
        mfu = tokens_per_second * trainer.flops_per_token / (trainer.peak_flops * args.world_size)

    def last(key: str):
        return next((entry[key] for entry in reversed(history) if key in entry), None)

    # the last evaluation: its loss and the benchmark scores logged beside it at the same step
    eval_step = next((entry.get("step") for entry in reversed(history) if "eval_loss" in entry), None)
    skip = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
    final_eval = {
        k: v
        for entry in history
        if eval_step is not None and entry.get("step") == eval_step
        for k, v in entry.items()
        if k.startswith("eval_") and k not in skip
    }
    logged = summarise_logs(history) if any("tokens_per_second" in entry for entry in history) else {}
    budget = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TimeBudgetCallback)), None)
    flags = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    precision = getattr(args, "precision", None)  # the training configs' choice (slam_recipes.precision)
    return {
        **(trainer.run_info or {}),
        "training": {
            "steps": state.global_step,
            "tokens_seen": tokens,
            "wall_time_seconds": round(runtime, 1),
            "sessions": clock.sessions() if clock is not None else 1,
            "tokens_per_second": round(tokens_per_second, 1) if tokens_per_second else None,
            "median_interval_tokens_per_second": logged.get("tokens_per_s"),
            "mfu": round(mfu, 4) if mfu is not None else None,
            # the logged intervals' peak (every session of a resumed run), else this process's so far (no interval
            # was logged: a run shorter than logging_steps)
            "peak_memory_gib": logged.get("peak_memory_gib") or round(peak_memory_gib(args.device), 3),
            "final_losses": {
                "train": last("loss"),
                "train_mean": train_metrics.get("train_loss"),
                "eval": last("eval_loss"),
            },
            "final_eval": final_eval,
        },
        "budget": {
            "budget_seconds": budget.budget_seconds,
            "used_seconds": round(budget.elapsed(), 1),
            "used_fraction": round(budget.elapsed() / budget.budget_seconds, 4),
            "stopped_by_budget": budget.stopped_at_step is not None,
        }
        if budget is not None
        else None,
        "hardware": {
            "device": device_description(args),
            "num_processes": args.world_size,
            "precision": flags,
            "precision_requested": precision.requested if precision else flags,
            "precision_reason": precision.reason if precision else None,
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_run_report(trainer, train_metrics: dict) -> dict:
    """On the main process: `run_summary.json`, `recipe.yaml` and the loss / learning-rate plot `training.png` in the
    output folder. Returns the summary."""
    import yaml

    summary = trainer.run_summary = run_summary(trainer, train_metrics)
    if not trainer.is_world_process_zero():
        return summary
    output_dir = trainer.args.output_dir
    os.makedirs(output_dir, exist_ok=True)
    with atomic_write(os.path.join(output_dir, SUMMARY_FILE)) as f:
        json.dump(summary, f, indent=2)
    with atomic_write(os.path.join(output_dir, RECIPE_FILE)) as f:
        yaml.safe_dump(summary.get("recipe", {}), f, sort_keys=False, allow_unicode=True)
    plot_training({summary.get("stage", "training"): trainer.state.log_history}, os.path.join(output_dir, PLOT_FILE))
    return summary


def summarise_logs(log_history: list[dict]) -> dict:
    """Median over the logged intervals after the first (which holds start-up, warm-up and compilation)."""
    intervals = [h for h in log_history if "tokens_per_second" in h]
    if not intervals:
        raise RuntimeError("no throughput logs: raise steps or lower log_every")

    def median(key: str) -> float | None:
        values = [h[key] for h in intervals if key in h]
        return statistics.median(values) if values else None

    real = median("tokens_per_second")
    fraction = median("real_token_fraction")
    losses = [h["loss"] for h in log_history if "loss" in h]
    return {
        "intervals": len(intervals),
        "tokens_per_s": round(real),
        "computed_tokens_per_s": round(real / fraction) if fraction else None,
        "real_token_fraction": fraction,
        "mfu": median("mfu"),
        "data_wait_fraction": median("data_wait_fraction"),
        "peak_memory_gib": max(h.get("peak_memory_gib", 0.0) for h in intervals),
        "final_loss": losses[-1] if losses else None,
    }
