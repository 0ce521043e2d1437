"""slam-recipes: train a speech language model the Slamming way (one GPU, one day) with the Hugging Face stack."""

from slam_recipes import attention  # noqa: F401  (registers attn_implementation="sdpa_varlen")
from slam_recipes.callbacks import CALLBACKS, BudgetSchedule, TimeBudgetCallback, build_callbacks, parse_time_budget
from slam_recipes.configs import DataArguments, ModelArguments, PretrainConfig, TimeBudgetArguments, parse_recipe_args
from slam_recipes.data import build_collator, build_pretraining_datasets, check_packing, load_unit_datasets, pack
from slam_recipes.errors import ConfigError, DataError, SlamError
from slam_recipes.model import build_unit_lm, check_vocab, count_parameters, flops_per_token, load_or_build_tokenizer
from slam_recipes.trainer import SlamTrainerMixin, UnitLMTrainer
from slam_recipes.units import build_unit_tokenizer

__version__ = "0.1.0"

__all__ = [
    "CALLBACKS",
    "BudgetSchedule",
    "ConfigError",
    "DataArguments",
    "DataError",
    "ModelArguments",
    "PretrainConfig",
    "SlamError",
    "SlamTrainerMixin",
    "TimeBudgetArguments",
    "TimeBudgetCallback",
    "UnitLMTrainer",
    "build_callbacks",
    "build_collator",
    "build_pretraining_datasets",
    "build_unit_lm",
    "build_unit_tokenizer",
    "check_packing",
    "check_vocab",
    "count_parameters",
    "flops_per_token",
    "load_or_build_tokenizer",
    "load_unit_datasets",
    "pack",
    "parse_recipe_args",
    "parse_time_budget",
]
