"""Trainer additions shared by every recipe: throughput logging (tokens/s, MFU, data wait, padding, peak memory) and
the budget-fitted LR schedule.

Only public Trainer methods are overridden (`log`, `get_batch_samples`, `create_scheduler`, `evaluate`).
"""

from __future__ import annotations

import os
import resource
import sys
import time

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer
from transformers.trainer_callback import ProgressCallback
from trl import DPOTrainer

from slam_recipes.training.budget import (
    BUDGET_SCHEDULES,
    BudgetProgressCallback,
    BudgetSchedule,
    TimeBudgetCallback,
    TrainingClockCallback,
    min_lr_ratio,
)
from slam_recipes.training.checkpoints import clear_checkpoints
from slam_recipes.training.preemption import EXIT_PREEMPTED, PreemptionCallback

# Dense bf16 tensor-core peak per device, in TFLOP/s (vendor datasheets). Matched against the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "A6000": 154.8,
    "A5000": 111.1,
    "A40": 149.7,
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


def peak_flops_per_device(override_tflops: float | None = None) -> float | None:
    """Peak bf16 FLOP/s of one device: the recipe's `peak_tflops`, else looked up from the CUDA device name."""
    if override_tflops:
        return override_tflops * 1e12
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def peak_memory_gib(device: torch.device | str | None = None) -> float:
    """Peak memory of this process so far, in GiB: CUDA memory allocated by torch when training runs on a GPU
    (`device`; by default wherever PyTorch sees one), else the resident set size."""
    on_gpu = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if on_gpu:
        return torch.cuda.max_memory_allocated() / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


class SlamTrainerMixin:
    """Mix into a `Trainer` (or TRL trainer). Every training log gets, over the interval since the previous one:

    - `tokens_per_second`: real (non-padding) input tokens per second, all processes together;
    - `mfu`: model FLOPs utilisation, from real tokens only (set `flops_per_token`, see
      `slam_recipes.modeling.unit_lm.model_flops_per_token`, and run on a GPU of known peak or set `peak_flops`);
    - `real_token_fraction`: real tokens / tokens computed (1 − the share of padding);
    - `data_wait_fraction`: share of the wall time spent in `get_batch_samples`, i.e. waiting for the data loader
      (an upper bound on a GPU, where the device may still be busy with queued work meanwhile);
    - `peak_memory_gib`: see `peak_memory_gib`.

    With a time budget and no `max_steps`, the LR schedule is a `BudgetSchedule` whose horizon the TimeBudgetCallback
    fits to the budget.

    Constructor keywords, besides the trainer's own: `benchmarks` ({name: PairBenchmark}, see
    `slam_recipes.evaluation.likelihood.load_benchmarks`), scored at every evaluation and logged as `eval_<name>`;
    `run_info` (`records.describe_run`), for run_summary.json and the model card; `flops_per_token` and
    `peak_flops` (FLOP/s per device), for MFU."""

    flops_per_token: float | None = None
    peak_flops: float | None = None
    benchmarks: dict | None = None  # name → PairBenchmark
    run_info: dict | None = None  # what the run is (see `records.describe_run`): run_summary.json and the model card
    run_summary: dict | None = None  # the measured record, set when training has ended (see `records.run_summary`)
    # at the previous training log: time, real tokens, computed tokens, seconds spent waiting for data
    _throughput_mark: tuple[float, int, int, float] | None = None
    _computed_tokens: int = 0  # input positions (padding included) fetched by this process
    _data_wait: float = 0.0  # seconds this process spent fetching batches

    def __init__(
        self,
        *args,
        benchmarks: dict | None = None,
        run_info: dict | None = None,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.benchmarks, self.run_info = benchmarks, run_info
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        if not any(isinstance(cb, TrainingClockCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(TrainingClockCallback())  # the run's tokens/s across resumes (records.run_summary)
        budget = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, TimeBudgetCallback)), None)
        if budget is not None and self.pop_callback(ProgressCallback) is not None:
            self.add_callback(BudgetProgressCallback(budget))  # the bar ends at the budget, not at num_train_epochs

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        start = time.perf_counter()
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._data_wait += time.perf_counter() - start
        main_input = getattr(self.model, "main_input_name", "input_ids")  # what the Trainer counts tokens of
        self._computed_tokens += sum(b[main_input].numel() for b in batch_samples if main_input in b)
        return batch_samples, num_items_in_batch

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.args.include_num_input_tokens_seen != "no":
            now, tokens = time.perf_counter(), self.state.num_input_tokens_seen
            computed = self._computed_tokens * self.args.world_size
            last = self._throughput_mark
            if last is not None and now > last[0]:
                elapsed = now - last[0]
                tokens_per_second = (tokens - last[1]) / elapsed
                logs["tokens_per_second"] = round(tokens_per_second, 1)
                if self.flops_per_token and self.peak_flops:
                    world = self.args.world_size
                    logs["mfu"] = round(tokens_per_second * self.flops_per_token / (self.peak_flops * world), 4)
                if computed > last[2]:
                    logs["real_token_fraction"] = round((tokens - last[1]) / (computed - last[2]), 4)
                logs["data_wait_fraction"] = round((self._data_wait - last[3]) / elapsed, 4)
                logs["peak_memory_gib"] = round(peak_memory_gib(self.args.device), 3)
            self._throughput_mark = (now, tokens, computed, self._data_wait)
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The usual evaluation, then each benchmark's score (×100) as `<prefix>_<name>`, logged and returned (so
        `metric_for_best_model` can name one)."""
        metrics = super().evaluate(
            eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        )
        if not self.benchmarks:
            return metrics
        from slam_recipes.evaluation.likelihood import evaluate_benchmark

        model = self.accelerator.unwrap_model(self.model)
        scores = {}
        with self.accelerator.autocast():
            for name, benchmark in self.benchmarks.items():
                result = evaluate_benchmark(
                    model,
                    benchmark,
                    mean_nll=self.args.mean_nll,
                    max_tokens_per_batch=self.args.benchmark_tokens_per_batch,
                    accelerator=self.accelerator,
                )
                scores[f"{metric_key_prefix}_{name}"] = round(result["score"], 2)
        self.log(scores)
        metrics.update(scores)
        return metrics

    def create_model_card(self, *args, **kwargs) -> None:
        """This package's card (base LM, TWIST init, unit tokenizer, data, recipe, tokens seen, wall time, hardware,
        evaluation) instead of the Trainer's generic one: from the run summary once training has ended, else (a
        checkpoint) from what the run is and how far it has got. Without `run_info`, the Trainer's own card."""
        if self.run_info is None:
            return super().create_model_card(*args, **kwargs)
        if not self.is_world_process_zero():
            return None
        from slam_recipes.training.hub import write_model_card

        summary = self.run_summary or {
            **self.run_info,
            "training": {"steps": self.state.global_step, "tokens_seen": self.state.num_input_tokens_seen},
            "in_progress": True,
        }
        write_model_card(self.args.output_dir, self.hub_model_id or self.args.hub_model_id, summary)
        return None

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        has_budget = any(isinstance(cb, TimeBudgetCallback) for cb in self.callback_handler.callbacks)
        kind = getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type)
        fit = has_budget and self.args.max_steps <= 0 and kind in BUDGET_SCHEDULES
        if self.lr_scheduler is None and fit:
            schedule = BudgetSchedule(
                horizon=num_training_steps,
                warmup=self.args.warmup_steps,
                min_lr_ratio=min_lr_ratio(kind, self.args.learning_rate, self.args.lr_scheduler_kwargs),
                kind=kind,
            )
            self.lr_scheduler = LambdaLR(optimizer if optimizer is not None else self.optimizer, schedule)
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)


class UnitLMTrainer(SlamTrainerMixin, Trainer):
    """`transformers.Trainer` for next-unit prediction."""


class UnitDPOTrainer(SlamTrainerMixin, DPOTrainer):
    """TRL's `DPOTrainer` with the same throughput logging and time budget as pretraining."""


def train_and_save(trainer, merge_adapters: bool = True) -> None:
    """The end of every recipe: train (resuming if asked; checkpoints renamed into place when complete, see
    `StagedCheckpointCallback`), record metrics and state, write the run's report (run_summary.json, recipe.yaml,
    training.png), save the model; with `push_to_hub`, the Trainer's `save_model` then pushes the folder with this
    package's model card."""
    from slam_recipes.training.callbacks import RecipeLoggingCallback
    from slam_recipes.training.checkpoints import StagedCheckpointCallback
    from slam_recipes.training.records import write_run_report

    args = trainer.args
    if args.should_save:
        clear_checkpoints(
            args.output_dir,
            all_of_them=getattr(args, "overwrite_output_dir", False) and not args.resume_from_checkpoint,
        )
    if trainer.run_info and args.report_to:
        trainer.add_callback(RecipeLoggingCallback(trainer.run_info["recipe"], trainer.callback_handler.callbacks))
    staged = StagedCheckpointCallback(trainer)
    trainer.add_callback(staged)  # last: it sees every other callback's request for a save
    try:
        result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    finally:
        staged.restore(args)  # an exception during a save leaves the Trainer pointed at the staging folder
    preemption = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, PreemptionCallback)), None)
    if preemption is not None and preemption.preempted_at_step is not None:
        step = preemption.preempted_at_step
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{step}")
        print(
            f"preempted at step {step}: {checkpoint} written; continue with --resume_from_checkpoint true "
            f"(exit code {EXIT_PREEMPTED})",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(EXIT_PREEMPTED)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    write_run_report(trainer, result.metrics)
    save_trained_model(trainer, args.output_dir, merge_adapters=merge_adapters)  # and pushes, with `push_to_hub`


def setup_logging(args) -> None:
    """Timestamped logs at the process's transformers level; this package's own messages at INFO on the main one,
    starting with the run's precision and why (see `TimeBudgetArguments.choose_precision`)."""
    import logging

    from slam_recipes.precision import log_choice

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=args.get_process_log_level())
    logging.getLogger("slam_recipes").setLevel(logging.INFO if args.should_log else logging.WARNING)
    if args.should_log and getattr(args, "precision", None) is not None:
        log_choice(args.precision, "training")


def save_trained_model(trainer, output_dir: str, merge_adapters: bool = True) -> None:
    """Save the final model and tokenizer. A PEFT model is saved merged (a plain transformers model: the trainer then
    holds the merged model, so a push uploads it too) or as adapters."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel) and merge_adapters:
        trainer.model = trainer.model_wrapped = model.merge_and_unload()
    trainer.save_model(output_dir)
