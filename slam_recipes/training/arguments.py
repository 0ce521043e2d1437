"""The training recipes' configurations: the model (`trl.ModelConfig` plus this package's fields), and
`transformers.TrainingArguments` and TRL's `DPOConfig` plus this package's fields (time budget, run folder,
callbacks, precision by capability, benchmarks scored at each evaluation).

Kept apart from `slam_recipes.configs`, whose argument classes import nothing heavy: importing `TrainingArguments`
costs torch, transformers, accelerate and PEFT.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from trl import DPOConfig, ModelConfig

from slam_recipes.configs import BenchmarkArguments
from slam_recipes.errors import ConfigError
from slam_recipes.training.budget import parse_time_budget
from slam_recipes.training.checkpoints import latest_complete_checkpoint

RUN_FILES = ("trainer_state.json", "run_summary.json", "training_args.bin", "model.safetensors")  # a run was here


@dataclass
class ModelArguments(ModelConfig):
    """Which model a training stage starts from: TRL's `ModelConfig` (checkpoint, `model_revision`, `dtype`,
    `attn_implementation`, LoRA through `use_peft` / `lora_*`, quantisation) plus the unit vocabulary and this
    package's overrides. DPO starts from a trained speech LM, whose weights are always loaded; pretraining adds
    `twist_init` (`PretrainModelArguments`). Without `lora_target_modules`, LoRA adapts every linear layer but the
    output head ("all-linear"), where PEFT would pick a per-architecture default."""

    num_units: int = field(
        default=500,
        metadata={
            "help": "Number of speech units. TWIST: vocabulary = num_units + 2 (PAD, <S>); interleaved: the text "
            "LM's vocabulary + num_units + 2 (<speech>, <text>)."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved unit tokenizer; default: the checkpoint's own, else a new one."}
    )
    rope_theta: float | None = field(default=None, metadata={"help": "RoPE base frequency override (paper: 10000)."})
    model_config_overrides: dict | str | None = field(
        default=None,
        metadata={"help": "Other config fields to override, as a mapping (YAML) or JSON string (CLI)."},
    )
    unit_tokenizer: dict | str | None = field(
        default=None,
        metadata={
            "help": "How the units were made, for the model card (feature_model, layer, kmeans, dedup, ...), as a "
            "mapping (YAML) or JSON string; default: read from the datasets' tokenize_config.json when there is one."
        },
    )
    peft_save: str = field(
        default="merged",
        metadata={"help": "merged: save a plain model with adapters folded in; adapter: save adapters."},
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("model_config_overrides", "unit_tokenizer"):
            if isinstance(getattr(self, name), str):
                try:
                    setattr(self, name, json.loads(getattr(self, name)))
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{name} is not valid JSON: {err}") from err
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        if self.peft_save not in ("merged", "adapter"):
            raise ConfigError(f"peft_save must be merged or adapter, got {self.peft_save!r}")
        if self.num_units < 1 or self.num_units > 65534 - 2:
            raise ConfigError(f"num_units must be in [1, 65532] (ids are stored as uint16), got {self.num_units}")
        if self.lora_target_modules is None:
            self.lora_target_modules = "all-linear"
        if self.load_in_8bit or self.load_in_4bit:  # TRL's fields, which build_unit_lm does not apply
            raise ConfigError(
                "load_in_8bit / load_in_4bit: quantised base LMs (QLoRA) are not supported by these recipes; "
                "use_peft with a bf16 or float32 base LM"
            )

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `build_unit_lm`: the weights are loaded (a trained speech LM's vocabulary is already
        the units', so nothing is resized)."""
        kwargs: dict[str, Any] = dict(self.model_config_overrides or {})
        kwargs.update(num_units=self.num_units, twist_init=True)
        for key, value in (
            ("revision", self.model_revision),
            ("dtype", self.dtype),
            ("attn_implementation", self.attn_implementation),
            ("rope_theta", self.rope_theta),
        ):
            if value is not None:
                kwargs[key] = value
        return kwargs


@dataclass
class PretrainModelArguments(ModelArguments):
    """The base LM of pretraining and how to initialise it."""

    twist_init: bool = field(
        default=True,
        metadata={
            "help": "TWIST: load the text LM's weights, then replace its vocabulary (interleaved: extend it). False: "
            "random init from config."
        },
    )

    def build_kwargs(self) -> dict[str, Any]:
        return {**super().build_kwargs(), "twist_init": self.twist_init}


@dataclass
class TimeBudgetArguments:
    """Fields every training recipe adds to its trainer config (pretraining and DPO alike)."""

    time_budget: str | None = field(
        default=None,
        metadata={
            "help": "Wall-clock training budget: 'HH:MM:SS', 'D-HH:MM:SS' or seconds. The run stops, evaluates "
            "and saves at the deadline; without max_steps the LR schedule is fitted to it. 'none' removes a "
            "recipe's budget."
        },
    )
    time_budget_count_downtime: bool = field(
        default=False,
        metadata={
            "help": "On resume, count the time between the checkpoint and the restart against the budget too "
            "(default: only training time counts)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an output_dir that already holds a run, replacing it (its checkpoints are removed "
            "when training starts). Without it, or resume_from_checkpoint, such a folder is refused."
        },
    )
    callbacks: list[str] = field(
        default_factory=lambda: ["time_budget", "preemption"],
        metadata={
            "help": "Callbacks by name (see slam_recipes.CALLBACKS): time_budget stops at the deadline; preemption "
            "checkpoints and exits on SIGTERM/SIGINT."
        },
    )
    peak_tflops: float | None = field(
        default=None,
        metadata={"help": "Peak bf16 TFLOP/s of one device for MFU; default: looked up from the GPU name."},
    )
    bf16_native_only: bool = field(
        default=True,
        metadata={
            "help": "bf16: true trains in bf16 only where the hardware computes it natively (AVX512-BF16 or AMX on "
            "CPU, torch.cuda.is_bf16_supported() on a GPU); elsewhere in float32 on CPU, fp16 with loss scaling "
            "on a GPU. false: bf16 wherever it is asked for. (bf16: false forces float32.)"
        },
    )

    def choose_precision(self) -> None:
        """Replace bf16 where the hardware lacks it (see `slam_recipes.precision`); the choice is kept as
        `self.precision` for the log, run_summary.json and the model card. Runs before TrainingArguments checks
        the flags, which refuses bf16 on a GPU without it."""
        import torch

        from slam_recipes.precision import choose_training_precision

        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")  # `accelerate launch`'s mixed_precision
        bf16 = self.bf16 or (not self.fp16 and launcher == "bf16")
        device = "cpu" if self.use_cpu or not torch.cuda.is_available() else "cuda"
        self.precision = choose_training_precision(bf16, self.fp16, device, native_only=self.bf16_native_only)
        if self.precision.fell_back:
            self.bf16, self.fp16 = False, self.precision.chosen == "fp16"
            if "ACCELERATE_MIXED_PRECISION" in os.environ:  # else accelerate would still autocast in bf16
                os.environ["ACCELERATE_MIXED_PRECISION"] = "fp16" if self.fp16 else "no"

    def check_resume(self) -> None:
        """`resume_from_checkpoint: true` (or `latest`) → the newest `checkpoint-*` of output_dir; false → None; a
        path must be a folder. A missing checkpoint is an error now, not after the data is prepared."""
        value = self.resume_from_checkpoint
        if value is None or not isinstance(value, str):
            return
        if value.lower() in ("false", "none", ""):
            self.resume_from_checkpoint = None
        elif value.lower() in ("true", "latest"):
            latest = latest_complete_checkpoint(self.output_dir)
            if latest is None:
                raise ConfigError(f"resume_from_checkpoint: no checkpoint-* folder in {self.output_dir} to resume")
            self.resume_from_checkpoint = latest
        elif not os.path.isdir(value):
            raise ConfigError(f"resume_from_checkpoint: no such checkpoint folder {value}")

    def check_output_dir(self) -> None:
        """An output_dir that already holds a run (a model, a trainer state, checkpoints) is not trained into again
        unless the run is resumed or `overwrite_output_dir` is set. Called by the training recipes at start-up (not
        when a recipe is only parsed)."""
        if self.resume_from_checkpoint or self.overwrite_output_dir or not os.path.isdir(self.output_dir):
            return
        held = sorted(
            name for name in os.listdir(self.output_dir) if name in RUN_FILES or name.startswith("checkpoint-")
        )
        if held:
            raise ConfigError(
                f"output_dir {self.output_dir} already holds a run ({', '.join(held[:3])}); pass "
                "--overwrite_output_dir true to replace it or --resume_from_checkpoint true to continue it"
            )

    def min_lr_as_rate(self) -> None:
        """`lr_scheduler_kwargs: {min_lr: x}` → `{min_lr_rate: x / learning_rate}`: the same schedule, but transformers
        then needs no `optimizer.defaults`, which DeepSpeed's ZeRO optimizer lacks."""
        kwargs = self.lr_scheduler_kwargs
        kind = getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)
        if kind == "cosine_with_min_lr" and isinstance(kwargs, dict) and kwargs.get("min_lr") is not None:
            if kwargs.get("min_lr_rate") is not None:
                raise ConfigError("lr_scheduler_kwargs: give min_lr or min_lr_rate, not both")
            rate = float(kwargs["min_lr"]) / self.learning_rate
            self.lr_scheduler_kwargs = {k: v for k, v in kwargs.items() if k != "min_lr"} | {"min_lr_rate": rate}

    def check_batch_sizes(self) -> None:
        """Batch sizes and accumulation steps are counts: below 1 is a ConfigError now, not torch's sampler error
        after the data is prepared and the output folder made."""
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")

    def check_time_budget(self) -> None:
        self.min_lr_as_rate()
        self.check_resume()
        if isinstance(self.time_budget, str) and self.time_budget.strip().lower() in ("none", "null"):
            self.time_budget = None  # `--time_budget none` clears the recipe file's budget
        self.time_budget_seconds = parse_time_budget(self.time_budget)
        # Tokens seen are always counted: they are logged with tokens/s and MFU. (Set here rather than as a field
        # default: HfArgumentParser runs string defaults of this field through its bool parser.)
        self.include_num_input_tokens_seen = "non_padding"


@dataclass
class PretrainConfig(TimeBudgetArguments, BenchmarkArguments, TrainingArguments):
    """`TrainingArguments` plus the time budget, with defaults suited to unit-LM pretraining."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep `seq_lengths` for the padding-free collator."}
    )

    def __post_init__(self):
        self.check_batch_sizes()
        self.choose_precision()
        super().__post_init__()
        self.check_time_budget()
        self.check_benchmarks()


@dataclass
class SlamDPOConfig(TimeBudgetArguments, BenchmarkArguments, DPOConfig):
    """TRL's `DPOConfig` plus the time budget and the benchmarks scored at each evaluation."""

    def __post_init__(self):
        self.check_batch_sizes()
        self.choose_precision()
        super().__post_init__()
        self.check_time_budget()
        self.check_benchmarks()
