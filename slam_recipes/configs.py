"""Recipe configuration: dataclasses parsed by TRL's `TrlParser` (CLI > YAML > default; unknown keys are errors)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml
from transformers import TrainingArguments
from trl import DPOConfig

from slam_recipes.callbacks import parse_time_budget
from slam_recipes.data import PACKING_MODES
from slam_recipes.errors import ConfigError


@dataclass
class ModelArguments:
    """Which base LM, how to initialise it, and what to override in its config."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base causal LM: a Hub id or a local folder (a config.json is enough without TWIST)."},
    )
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the base LM."})
    num_units: int = field(
        default=500, metadata={"help": "Number of speech units; vocabulary = num_units + 2 (PAD, <S>)."}
    )
    twist_init: bool = field(
        default=True,
        metadata={
            "help": "TWIST: load the text LM's weights, then replace its vocabulary. False: random init from config."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved unit tokenizer; default: the checkpoint's own, else a new one."}
    )
    dtype: str | None = field(
        default=None,
        metadata={
            "help": "Weight dtype at load (float32, bfloat16, auto). Mixed precision is TrainingArguments.bf16."
        },
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel: sdpa, eager, flash_attention_2, flex_attention, ..."}
    )
    rope_theta: float | None = field(default=None, metadata={"help": "RoPE base frequency override (paper: 10000)."})
    model_config_overrides: dict | str | None = field(
        default=None,
        metadata={"help": "Other config fields to override, as a mapping (YAML) or JSON string (CLI)."},
    )
    # PEFT (LoRA)
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules that get adapters; default: all linear layers but the output head."}
    )
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "Modules trained in full next to the adapters (pretraining adds the embeddings itself)."},
    )
    peft_save: str = field(
        default="merged",
        metadata={"help": "merged: save a plain model with adapters folded in; adapter: save adapters."},
    )

    def __post_init__(self):
        if isinstance(self.model_config_overrides, str):
            import json

            try:
                self.model_config_overrides = json.loads(self.model_config_overrides)
            except json.JSONDecodeError as err:
                raise ConfigError(f"model_config_overrides is not valid JSON: {err}") from err
        if self.peft_save not in ("merged", "adapter"):
            raise ConfigError(f"peft_save must be merged or adapter, got {self.peft_save!r}")
        if self.num_units < 1 or self.num_units > 65534 - 2:
            raise ConfigError(f"num_units must be in [1, 65532] (ids are stored as uint16), got {self.num_units}")

    def lora_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `build_lora_config`."""
        return dict(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=self.lora_target_modules,
            modules_to_save=self.lora_modules_to_save,
        )

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `build_unit_lm`."""
        kwargs: dict[str, Any] = dict(self.model_config_overrides or {})
        kwargs.update(num_units=self.num_units, twist_init=self.twist_init)
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
class SourceArguments:
    """Where the data is and how it splits: the fields pretraining and DPO data share."""

    dataset_name: list[str] | None = field(
        default=None,
        metadata={
            "help": "One or more sources: Hub dataset names, save_to_disk folders, data folders, or "
            "jsonl/parquet/arrow files (globs allowed)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split used for training."})
    validation_split: str | None = field(
        default=None, metadata={"help": "Split of the same sources used for evaluation (e.g. validation)."}
    )
    validation_fraction: float = field(
        default=0.0, metadata={"help": "Hold out this fraction of the training rows for evaluation instead."}
    )
    dedup: bool = field(default=False, metadata={"help": "Collapse consecutive repeated units (for raw frame units)."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for data preparation."})

    def __post_init__(self):
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")


@dataclass
class DataArguments(SourceArguments):
    """Unit datasets: how rows become token ids, how they are mixed and packed."""

    dataset_ratios: list[float] | None = field(
        default=None,
        metadata={"help": "Sampling ratio per source (interleaved); default: concatenate all sources."},
    )
    mixture_stopping_strategy: str = field(
        default="first_exhausted",
        metadata={
            "help": "With dataset_ratios: stop at the first exhausted source, or at all_exhausted (oversampling)."
        },
    )
    units_column: str | None = field(
        default=None,
        metadata={"help": "Column with the units; default: 'units' (int lists) or 'audio_repr' (strings)."},
    )
    add_bos_eos: bool = field(default=True, metadata={"help": "Frame each utterance as <S> units <S>."})
    min_units: int = field(default=1, metadata={"help": "Drop utterances with fewer units (after dedup)."})
    max_units: int | None = field(default=None, metadata={"help": "Drop utterances with more units (after dedup)."})
    context_length: int = field(
        default=1024, metadata={"help": "Tokens per packed row; longer utterances are chunked."}
    )
    packing: str = field(
        default="padding_free",
        metadata={
            "help": f"One of {PACKING_MODES}: documents side by side without cross-attention, "
            "fixed blocks, or padded batches."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.packing not in PACKING_MODES:
            raise ConfigError(f"packing must be one of {PACKING_MODES}, got {self.packing!r}")
        if self.mixture_stopping_strategy not in ("first_exhausted", "all_exhausted"):
            raise ConfigError(
                f"mixture_stopping_strategy must be first_exhausted or all_exhausted, got {self.mixture_stopping_strategy!r}"
            )
        if self.context_length < 4:
            raise ConfigError(f"context_length must be at least 4, got {self.context_length}")


@dataclass
class PreferenceDataArguments(SourceArguments):
    """Spoken preference pairs (`prompt`, `chosen`, `rejected` as units) and the paper's repetition filter."""

    auto_bleu_filter: bool = field(
        default=True,
        metadata={"help": "Drop pairs whose prompt_text + chosen_text is repetitive (needs the text columns)."},
    )
    auto_bleu_n: int = field(default=2, metadata={"help": "n of the auto-BLEU n-grams (paper: bigrams)."})
    auto_bleu_threshold: float = field(
        default=0.3, metadata={"help": "Drop a pair at auto-BLEU >= this (paper: 0.3)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.auto_bleu_n < 1:
            raise ConfigError(f"auto_bleu_n must be at least 1, got {self.auto_bleu_n}")


@dataclass
class TimeBudgetArguments:
    """Fields every training recipe adds to its trainer config (pretraining and DPO alike)."""

    time_budget: str | None = field(
        default=None,
        metadata={
            "help": "Wall-clock training budget: 'HH:MM:SS', 'D-HH:MM:SS' or seconds. The run stops, evaluates "
            "and saves at the deadline; without max_steps the LR schedule is fitted to it."
        },
    )
    callbacks: list[str] = field(
        default_factory=lambda: ["time_budget"], metadata={"help": "Callbacks by name (see slam_recipes.CALLBACKS)."}
    )
    peak_tflops: float | None = field(
        default=None,
        metadata={"help": "Peak bf16 TFLOP/s of one device for MFU; default: looked up from the GPU name."},
    )

    def check_time_budget(self) -> None:
        self.time_budget_seconds = parse_time_budget(self.time_budget)
        # Tokens seen are always counted: they are logged with tokens/s and MFU. (Set here rather than as a field
        # default: HfArgumentParser runs string defaults of this field through its bool parser.)
        self.include_num_input_tokens_seen = "non_padding"


@dataclass
class PretrainConfig(TimeBudgetArguments, TrainingArguments):
    """`TrainingArguments` plus the time budget, with defaults suited to unit-LM pretraining."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep `seq_lengths` for the padding-free collator."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_time_budget()


@dataclass
class SlamDPOConfig(TimeBudgetArguments, DPOConfig):
    """TRL's `DPOConfig` plus the time budget."""

    def __post_init__(self):
        super().__post_init__()
        self.check_time_budget()


def recipe_fields(dataclass_types) -> set[str]:
    return {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}


def parse_recipe_args(dataclass_types, args: list[str] | None = None):
    """Parse `--config recipe.yaml` plus CLI flags into the given dataclasses; every problem is a ConfigError."""
    from trl import TrlParser

    argv = sys.argv[1:] if args is None else list(args)
    config_path = _config_path(argv)
    if config_path is not None:
        _check_yaml(config_path, recipe_fields(dataclass_types))
    parser = TrlParser(dataclass_types)
    try:
        return parser.parse_args_and_config(args=argv)
    except ConfigError:
        raise
    except ValueError as err:
        where = f"{config_path}: " if config_path else ""
        raise ConfigError(where + str(err).strip().splitlines()[0]) from err


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _check_yaml(path: str, known: set[str]) -> None:
    """The recipe file must exist, be a YAML mapping, and hold only known keys."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such recipe file")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of option: value")
    unknown = sorted(set(config) - known - {"env"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}")
