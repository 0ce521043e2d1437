"""Recipe configuration: dataclasses parsed by TRL's `TrlParser` (CLI > YAML > default; unknown keys are errors).

Nothing here imports torch, transformers or TRL at module level, so parsing a non-training recipe and every
`--help` stay fast; the training configs built on `TrainingArguments` / `DPOConfig` are in
`slam_recipes.training.arguments`."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from slam_recipes.errors import ConfigError

# The paper's sampling for continuations (Slamming, Sec. 4; TWIST's): the defaults of every generation option.
PAPER_SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 25, "max_new_tokens": 150, "repetition_penalty": 1.1}
PACKING_MODES = ("padding_free", "block", "none")  # see slam_recipes.data.packing.pack
AUTO_BLEU_TOKENIZERS = (
    "nltk",
    "normalized",
)  # see slam_recipes.evaluation.metrics.auto_bleu_words; the first is the paper's
AUTO_BLEU_TOKENIZER_HELP = (
    f"One of {AUTO_BLEU_TOKENIZERS}: how auto-BLEU splits words. nltk: the paper's (NLTK's word tokenizer; case and "
    "punctuation kept); normalized: lower-cased, punctuation dropped."
)


CROSS_MODAL_DIRECTIONS = ("S2S", "S2T", "T2S", "T2T")  # prompt 2 ending: S speech, T text (evaluation.cross_modal)


def check_cross_modal_directions(directions: Sequence[str], name: str = "cross_modal_directions") -> None:
    """A ConfigError naming the option for an empty list or a direction not in CROSS_MODAL_DIRECTIONS."""
    unknown = [d for d in directions if d not in CROSS_MODAL_DIRECTIONS]
    if unknown or not directions:
        given = ", ".join(repr(d) for d in unknown) or "none given"
        raise ConfigError(f"{name}: {given}; choose from {', '.join(CROSS_MODAL_DIRECTIONS)} (upper case)")


def cross_modal_result_name(benchmark: str, direction: str) -> str:
    """How a cross-modal benchmark scored in one direction is reported: `<name>_<direction in lower case>`."""
    return f"{benchmark}_{direction.lower()}"


def parse_benchmark_specs(specs: Sequence[str] | None, option: str = "benchmarks") -> dict[str, str]:
    """`["swuggy=data/eval/swuggy", "data/eval/tsc"]` → `{name: path}`; a bare path is named after its file/folder.
    Errors name `option`."""
    named: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = os.path.splitext(os.path.basename(os.path.normpath(spec)))[0]
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise ConfigError(f"{option}: {spec!r} is not name=path")
        if name in named:
            raise ConfigError(f"{option}: the name {name!r} is given twice")
        named[name] = path
    return named


# The keys of one entry of TRL's dataset mixture (`trl.scripts.utils.DatasetConfig`, the items of
# `DatasetMixtureConfig.datasets`); tests/test_configs.py keeps this list equal to TRL's.
DATASET_CONFIG_KEYS = ("path", "name", "data_dir", "data_files", "split", "columns", "fraction")


def check_mixture(datasets) -> None:
    """A ConfigError naming the entry (`datasets[i]`) for anything but a list of mappings with a `path` string and
    only DATASET_CONFIG_KEYS; `columns` a list of names; `fraction` a number ≥ 0, given for every entry or none."""
    if not isinstance(datasets, list) or not datasets:
        raise ConfigError("datasets must be a non-empty list of mappings (path, name, split, columns, fraction, ...)")
    for i, entry in enumerate(datasets):
        where = f"datasets[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping with a path, got {entry!r}")
        unknown = sorted(set(entry) - set(DATASET_CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {list(DATASET_CONFIG_KEYS)}")
        if not isinstance(entry.get("path"), str) or not entry["path"]:
            raise ConfigError(f"{where}: path is required (a Hub dataset, a folder or data files)")
        columns = entry.get("columns")
        if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
            raise ConfigError(f"{where}: columns must be a list of column names, got {columns!r}")
        fraction = entry.get("fraction")
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or fraction < 0
        ):
            raise ConfigError(f"{where}: fraction must be a number ≥ 0, got {fraction!r}")
    given = [entry.get("fraction") is not None for entry in datasets]
    if any(given) and not all(given):
        raise ConfigError("datasets: give a fraction for every source or for none")


def check_auto_bleu(n: int, tokenizer: str) -> None:
    """The auto-BLEU options, for the DPO filter and the generative metrics: a one-line `ConfigError` when the n-gram
    order `n` is below 1 or `tokenizer` is not one of `AUTO_BLEU_TOKENIZERS`."""
    if n < 1:
        raise ConfigError(f"auto_bleu_n must be at least 1, got {n}")
    if tokenizer not in AUTO_BLEU_TOKENIZERS:
        raise ConfigError(f"auto_bleu_tokenizer must be one of {AUTO_BLEU_TOKENIZERS}, got {tokenizer!r}")


@dataclass
class SourceArguments:
    """Where the data is and how it splits: the fields pretraining and DPO data share. The sources are given either
    short, as `dataset_name` (a list of paths, with one `dataset_config` and `dataset_ratios` for all), or as TRL's
    dataset mixture (`datasets`: one mapping per source, the entries of `trl.DatasetMixtureConfig`);
    `slam_recipes.data.sources.as_mixture` reads either."""

    dataset_name: list[str] | None = field(
        default=None,
        metadata={
            "help": "One or more sources: Hub dataset names, save_to_disk folders, data folders, or "
            "jsonl/parquet/arrow files (globs allowed). The short form of `datasets`."
        },
    )
    datasets: list[dict] | None = field(
        default=None,
        metadata={
            "help": "The sources as TRL's dataset mixture (YAML): a list of mappings with `path` and optionally "
            "`name` (config), `data_dir`, `data_files`, `split` (default: dataset_split), `columns` (kept columns) "
            "and `fraction` (the source's share of a pretraining mixture). Instead of dataset_name."
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
        if self.datasets is not None:
            if self.dataset_name:
                raise ConfigError("give the sources as dataset_name or as datasets, not both")
            check_mixture(self.datasets)


INTERLEAVING_FIELDS = (
    "interleaved",
    "interleave_frame_rate",
    "interleave_mean_span",
    "interleave_fraction",
    "text_column",
)


@dataclass
class DataArguments(SourceArguments):
    """Unit datasets: how rows become token ids, how they are mixed and packed."""

    dataset_ratios: list[float] | None = field(
        default=None,
        metadata={
            "help": "Sampling ratio per source (interleaved); default: concatenate all sources. A source with a "
            "positive ratio must keep rows after min_units/max_units; under all_exhausted no ratio may be 0."
        },
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
        default=1024,
        metadata={
            "help": "Tokens per packed row; a longer utterance is framed <S> units <S> and cut into pieces (only "
            "the first starts with <S>, only the last ends with it)."
        },
    )
    packing: str = field(
        default="padding_free",
        metadata={
            "help": f"One of {PACKING_MODES}: documents side by side without cross-attention, "
            "fixed blocks, or padded batches."
        },
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={
            "help": "Pad every row's length to a multiple of this (a flat padding-free batch of n rows: to a "
            "multiple of n × this). With packing and context_length here, every micro-batch has the same shape "
            "(static shapes, so torch_compile compiles once)."
        },
    )
    # Speech-text interleaved pretraining (SIMS: Maimon et al. 2025, arXiv 2504.02398; slamkit's interleaving
    # tokeniser). Off by default: the Slam recipe replaces the text LM's vocabulary with units (TWIST).
    interleaved: bool = field(
        default=False,
        metadata={
            "help": "Keep the base LM's tokenizer and embeddings, add num_units unit tokens and <speech> / <text>, "
            "and read each source by its columns: units + duration + aligned_text are interleaved, units alone are "
            "speech-only rows, a text column text-only rows."
        },
    )
    interleave_frame_rate: float = field(
        default=25.0,
        metadata={"help": "Unit frames per second before dedup, to cut units by word time (mHuBERT: 25)."},
    )
    interleave_mean_span: float = field(
        default=10.0, metadata={"help": "Mean spoken span in words, Poisson λ (slamkit interleaved_hubert_25: 10)."}
    )
    interleave_fraction: float = field(
        default=0.3, metadata={"help": "Share of each utterance's words that are spoken (slamkit: 0.3)."}
    )
    text_column: str = field(default="text", metadata={"help": "The column of text-only sources."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.interleave_fraction <= 1 or not self.interleave_mean_span > 0:
            raise ConfigError("interleave_fraction must be in [0, 1] and interleave_mean_span positive")
        if not self.interleave_frame_rate > 0:
            raise ConfigError(f"interleave_frame_rate must be positive, got {self.interleave_frame_rate}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ConfigError(f"pad_to_multiple_of must be positive, got {self.pad_to_multiple_of}")
        if self.packing not in PACKING_MODES:
            raise ConfigError(f"packing must be one of {PACKING_MODES}, got {self.packing!r}")
        if self.mixture_stopping_strategy not in ("first_exhausted", "all_exhausted"):
            raise ConfigError(
                f"mixture_stopping_strategy must be first_exhausted or all_exhausted, got {self.mixture_stopping_strategy!r}"
            )
        if self.context_length < 4:
            raise ConfigError(f"context_length must be at least 4, got {self.context_length}")
        if self.datasets is not None and self.dataset_ratios is not None:
            raise ConfigError("dataset_ratios goes with dataset_name; in datasets, give each source its fraction")


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
    auto_bleu_tokenizer: str = field(default="nltk", metadata={"help": AUTO_BLEU_TOKENIZER_HELP})

    def __post_init__(self):
        super().__post_init__()
        check_auto_bleu(self.auto_bleu_n, self.auto_bleu_tokenizer)
        if any(entry.get("fraction") is not None for entry in self.datasets or []):
            raise ConfigError("datasets: fraction is for pretraining mixtures; preference pairs are concatenated")


@dataclass
class BenchmarkArguments:
    """Pairwise likelihood benchmarks (sWUGGY, sBLIMP, sSC, tSC, SALMon as pair datasets of units): scored by the
    evaluation recipe, and at every evaluation step of pretraining and DPO when given there."""

    benchmarks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Pair datasets as name=path (a save_to_disk folder, jsonl/parquet files or a Hub dataset with "
            "`positive` and `negative` units); a bare path is named after its folder or file."
        },
    )
    mean_nll: bool = field(
        default=True,
        metadata={"help": "Score a sample by its mean token log-likelihood (slamkit's default); false: the sum."},
    )
    max_pairs: int | None = field(
        default=None, metadata={"help": "Score only the first N pairs of each benchmark (quick checks)."}
    )
    benchmark_tokens_per_batch: int = field(
        default=16384,
        metadata={"help": "Padded tokens per scoring batch (samples are batched by length)."},
    )

    def check_benchmarks(self) -> None:
        parse_benchmark_specs(self.benchmarks)
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ConfigError(f"max_pairs must be at least 1, got {self.max_pairs}")
        if self.benchmark_tokens_per_batch < 1:
            raise ConfigError(f"benchmark_tokens_per_batch must be positive, got {self.benchmark_tokens_per_batch}")
        strategy = getattr(self, "eval_strategy", None)  # training recipes: scored at each evaluation
        if self.benchmarks and getattr(strategy, "value", strategy) == "no":
            warnings.warn(
                "benchmarks are scored at evaluation steps, but eval_strategy is 'no': they will not run", stacklevel=2
            )


@dataclass
class SpeechLMArguments:
    """A trained speech LM to run: where it is, on which device and dtype, and where the outputs go."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The speech LM: a trained output folder or a Hub id."}
    )
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the model."})
    num_units: int = field(default=500, metadata={"help": "Units of the model's vocabulary (checked at load)."})
    dtype: str = field(
        default="auto",
        metadata={
            "help": "auto (bfloat16 on a GPU that has it, else float16; float32 on CPU), bfloat16, float16 or float32."
        },
    )
    bf16_native_only: bool = field(
        default=True,
        metadata={
            "help": "Run bfloat16 only where the hardware computes it natively (else float16 on a GPU, float32 on "
            "CPU); false: bfloat16 wherever dtype asks for it."
        },
    )
    attn_implementation: str | None = field(default="sdpa", metadata={"help": "Attention kernel (sdpa, eager, ...)."})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, ...; default: cuda when available."})
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "evaluate: where the results go (default: the model folder, or outputs/eval/<name> for a Hub "
            "id); generate: where generations.jsonl and the audio go (required)."
        },
    )

    def load_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `model.load_speech_lm`."""
        return {
            "revision": self.model_revision,
            "dtype": self.dtype,
            "bf16_native_only": self.bf16_native_only,
            "attn_implementation": self.attn_implementation,
            "device": self.device,
        }

    def check_model(self) -> None:
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required (a trained output folder or a Hub id)")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ConfigError(f"dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")


@dataclass
class UnitTokenizerArguments:
    """How audio becomes units: feature model and layer (or MFCC), k-means centroids, dedup."""

    backend: str = field(default="hubert", metadata={"help": "hubert (any HuBERT-family model) or mfcc (offline)."})
    feature_model: str | None = field(
        default="slprl/mhubert-base-25hz", metadata={"help": "HuBERT-family checkpoint (Hub name or folder)."}
    )
    layer: int = field(default=11, metadata={"help": "Transformer layer whose output is clustered (1-based)."})
    kmeans_path: str | None = field(
        default=None,
        metadata={
            "help": "Centroids: .safetensors / .npy, or a scikit-learn pickle (needs allow_pickle_kmeans); a path or "
            "a URL (downloaded once, checked against its published sha256)."
        },
    )
    allow_pickle_kmeans: bool = field(
        default=False,
        metadata={"help": "Allow loading a pickled k-means (runs code); it is converted once to .safetensors."},
    )
    dedup: bool = field(default=True, metadata={"help": "Collapse consecutive repeated units."})
    mfcc_frame_rate: int = field(
        default=50, metadata={"help": "backend mfcc: frames per second (50, or 25 like mHuBERT-25Hz; the demo's)."}
    )

    def check_backend(self) -> None:
        if self.backend not in ("hubert", "mfcc"):
            raise ConfigError(f"backend must be hubert or mfcc, got {self.backend!r}")


@dataclass
class GenerationArguments(UnitTokenizerArguments):
    """Speech continuation: prompts, the paper's sampling, and the unit vocoder that turns units into audio."""

    prompts: str | None = field(
        default=None,
        metadata={
            "help": "Prompts: a folder/glob of audio files or an HF audio dataset (tokenised with backend / "
            "feature_model / layer / kmeans_path), or a units dataset (`units`, `audio_repr`, or a pair dataset's "
            "`positive` column, e.g. the correct sStoryCloze samples)."
        },
    )
    prompts_split: str = field(default="train", metadata={"help": "Split of a prompts dataset."})
    prompts_column: str | None = field(
        default=None, metadata={"help": "Column of the prompts dataset (default: positive, audio, units)."}
    )
    num_prompts: int | None = field(default=1000, metadata={"help": "Prompts used, from the start (paper: 1000)."})
    prompt_seconds: float | None = field(
        default=3.0, metadata={"help": "Prompt length in seconds of audio (paper: 3); null: the whole sample."}
    )
    frame_rate: float = field(
        default=25.0,
        metadata={"help": "Unit frames per second before dedup (mHuBERT-25Hz: 25); cuts unit prompts to seconds."},
    )
    do_sample: bool = field(default=True, metadata={"help": "Sample (paper) rather than greedy decoding."})
    temperature: float = field(
        default=PAPER_SAMPLING["temperature"], metadata={"help": "Sampling temperature (paper: 0.8)."}
    )
    top_k: int = field(default=PAPER_SAMPLING["top_k"], metadata={"help": "Top-k sampling (paper: 25)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling (paper: 1.0, off)."})
    max_new_tokens: int = field(
        default=PAPER_SAMPLING["max_new_tokens"], metadata={"help": "Units generated at most (paper: 150)."}
    )
    repetition_penalty: float = field(
        default=PAPER_SAMPLING["repetition_penalty"], metadata={"help": "Repetition penalty (paper: 1.1)."}
    )
    generation_batch_size: int = field(default=32, metadata={"help": "Prompts per generate call (left-padded)."})
    seed: int = field(default=42, metadata={"help": "Sampling seed."})
    vocoder_path: str | None = field(
        default=None,
        metadata={
            "help": "Unit HiFi-GAN checkpoint in the textlesslib format: a .pt file, a folder, or a URL (cached); "
            "the paper's: https://dl.fbaipublicfiles.com/textless_nlp/twist/speech_tokenizer/"
            "hifigan_lj_mhubert_base_25hz.pt"
        },
    )
    vocoder_config: str | None = field(
        default=None, metadata={"help": "Its JSON config (default: <checkpoint>_config.json beside it)."}
    )
    vocoder_batch_size: int = field(default=16, metadata={"help": "Sequences per vocoder batch."})

    def check_generation(self) -> None:
        self.check_backend()
        for name in ("num_prompts", "max_new_tokens", "generation_batch_size", "vocoder_batch_size", "top_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ConfigError("temperature and repetition_penalty must be positive and top_p in (0, 1]")
        if self.prompt_seconds is not None and self.prompt_seconds <= 0:
            raise ConfigError(f"prompt_seconds must be positive or null, got {self.prompt_seconds}")

    def sampling(self) -> dict:
        return {
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }


@dataclass
class GenerateArguments(GenerationArguments, SpeechLMArguments):
    """recipes/generate.py: continue prompts, write the units and (with a vocoder) the audio."""

    cross_modal_direction: str | None = field(
        default=None,
        metadata={
            "help": "Interleaved models: prompt 2 continuation modality, S = speech, T = text: S2S (the default), "
            "S2T (a spoken prompt continued in text), T2S (text continued in units), T2T. T2* read the prompt from "
            "a text column (prompts_column)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into an output_dir that holds generations already (its audio and page are replaced)."
        },
    )

    def __post_init__(self):
        self.check_model()
        self.check_generation()
        if self.cross_modal_direction is not None:
            check_cross_modal_directions([self.cross_modal_direction], "cross_modal_direction")
            if self.cross_modal_direction == "T2T" and self.vocoder_path:
                raise ConfigError(
                    "vocoder_path: a T2T generation has no speech to vocode (prompt and ending are text)"
                )
        if not self.prompts:
            raise ConfigError("prompts is required (a folder of audio files, an audio dataset or a units dataset)")
        if not self.output_dir:
            raise ConfigError("output_dir is required")


@dataclass
class GenPPLArguments:
    """GenPPL and auto-BLEU: transcribe the vocoded prompt + continuation, score the transcript with a text LM."""

    asr_model: str = field(
        default="openai/whisper-large-v3-turbo", metadata={"help": "Speech recognition model (any Whisper name)."}
    )
    asr_language: str | None = field(default="en", metadata={"help": "Language passed to Whisper (null: detect)."})
    asr_batch_size: int = field(default=16, metadata={"help": "Files per ASR batch."})
    ppl_model: str = field(
        default="meta-llama/Llama-3.2-1B", metadata={"help": "Causal text LM of the perplexity (paper: Llama-3.2-1B)."}
    )
    ppl_batch_size: int = field(default=16, metadata={"help": "Transcripts per text-LM batch."})
    auto_bleu_n: int = field(default=2, metadata={"help": "auto-BLEU n-gram order (paper: 2, word bigrams)."})
    auto_bleu_tokenizer: str = field(default="nltk", metadata={"help": AUTO_BLEU_TOKENIZER_HELP})


@dataclass
class CrossModalArguments:
    """Cross-modal StoryCloze for interleaved speech–text models (SIMS Table 3: S→S, S→T, T→S, T→T)."""

    cross_modal_benchmarks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Cross-modal pair datasets as name=path: `prompt`, `positive`, `negative` units, each with its "
            "`<column>_text`. Needs an interleaved model (its tokenizer has the units and <speech> / <text>)."
        },
    )
    cross_modal_directions: list[str] = field(
        default_factory=lambda: list(CROSS_MODAL_DIRECTIONS),
        metadata={"help": "Prompt modality 2 ending modality, S = speech, T = text: any of S2S, S2T, T2S, T2T."},
    )

    def check_cross_modal(self) -> None:
        parse_benchmark_specs(self.cross_modal_benchmarks, "cross_modal_benchmarks")
        check_cross_modal_directions(self.cross_modal_directions)
        if not self.cross_modal_benchmarks and list(self.cross_modal_directions) != list(CROSS_MODAL_DIRECTIONS):
            warnings.warn("cross_modal_directions is set but no cross_modal_benchmarks are given: it has no effect",
                          stacklevel=2)  # fmt: skip

    def cross_modal_result_names(self) -> dict[str, tuple[str, str]]:
        """`{result name: (benchmark, direction)}`: each cross-modal benchmark scored in each direction is reported
        as `<name>_<direction in lower case>` (tsc_cross_s2t)."""
        names = parse_benchmark_specs(self.cross_modal_benchmarks, "cross_modal_benchmarks")
        return {cross_modal_result_name(n, d): (n, d) for n in names for d in self.cross_modal_directions}


@dataclass
class EvalArguments(GenPPLArguments, GenerationArguments, CrossModalArguments, BenchmarkArguments, SpeechLMArguments):
    """The evaluation recipe: pairwise likelihood benchmarks (speech-only, and cross-modal for interleaved models)
    and/or the generative metrics (GenPPL, auto-BLEU)."""

    def __post_init__(self):
        self.check_model()
        if not self.benchmarks and not self.cross_modal_benchmarks and not self.prompts:
            raise ConfigError("benchmarks is empty and no prompts are given: nothing to evaluate")
        self.check_benchmarks()
        self.check_cross_modal()
        shared = set(parse_benchmark_specs(self.benchmarks)) & set(self.cross_modal_result_names())
        if shared:
            raise ConfigError(
                f"benchmarks: the name(s) {sorted(shared)} are also cross-modal results (<name>_<direction>)"
            )
        if self.prompts:
            self.check_generation()
            if not self.vocoder_path:
                raise ConfigError("the generative metrics need vocoder_path (a unit HiFi-GAN checkpoint)")
            check_auto_bleu(self.auto_bleu_n, self.auto_bleu_tokenizer)


@dataclass
class ConvertArguments:
    """Benchmark conversion: a published layout + the units of its audio files → a pair dataset."""

    layout: str | None = field(
        default=None, metadata={"help": "zr2021 (sWUGGY/sBLIMP), storycloze (sSC/tSC) or salmon."}
    )
    input_dir: str | None = field(
        default=None, metadata={"help": "The benchmark folder (e.g. lexical/dev, sSC, salmon)."}
    )
    units: str | None = field(
        default=None,
        metadata={
            "help": "Units of the folder's audio files: a dataset with a file-name column (file, file_name, path) "
            "and units (`units` or `audio_repr`)."
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the pair dataset is saved (save_to_disk)."})
    num_units: int = field(default=500, metadata={"help": "Size of the unit vocabulary (ids are checked)."})
    units_column: str | None = field(default=None, metadata={"help": "Units column of the units dataset."})
    file_column: str | None = field(default=None, metadata={"help": "File-name column of the units dataset."})
    dedup: bool = field(default=False, metadata={"help": "Collapse repeated units (raw frame units)."})
    positive_suffix: str = field(default="correct", metadata={"help": "storycloze: <idx>_<this> is the positive."})
    negative_suffix: str = field(default="incorrect", metadata={"help": "storycloze: <idx>_<this> is the negative."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})

    def __post_init__(self):
        for name in ("layout", "input_dir", "units", "output_dir"):  # the layout name: convert_benchmark checks it
            if not getattr(self, name):
                raise ConfigError(f"{name} is required")

    def layout_options(self) -> dict:
        if self.layout == "storycloze":
            return {"positive_suffix": self.positive_suffix, "negative_suffix": self.negative_suffix}
        return {}


def recipe_fields(dataclass_types) -> set[str]:
    return {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}


# Options of another stage, named in the error when given to one that has none: a hint where "unknown" would puzzle.
OTHER_STAGE_OPTIONS = {
    "twist_init": "twist_init is a pretraining option: DPO starts from a trained speech LM, whose weights are always "
    "loaded (a random init would train from noise with the vocabulary check still passing)",
}


def _other_stage_hint(names) -> str:
    hints = [OTHER_STAGE_OPTIONS[name] for name in names if name in OTHER_STAGE_OPTIONS]
    return f" ({'; '.join(hints)})" if hints else ""


def parse_recipe_args(dataclass_types, args: list[str] | None = None):
    """Parse `--config recipe.yaml` plus CLI flags into the given dataclasses; every problem is a ConfigError: an
    unknown option or a value of the wrong type (argparse's own message, on one line), an `output_dir` that is a
    file."""
    from trl import TrlParser

    from slam_recipes.recipe_help import HELP_WIDTH, store_help, wants_help

    argv = sys.argv[1:] if args is None else list(args)
    config_path = _config_path(argv)
    flags = [arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")]
    recipe = read_recipe(config_path, recipe_fields(dataclass_types)) if config_path is not None else None
    if recipe is not None:
        recipe = _sources_from_the_command_line(recipe, flags)

    class RecipeParser(TrlParser):
        def error(self, message):  # argparse's hook for a bad value: one `error:` line, not the usage text
            option = re.match(r"argument --([\w.-]+)", message)
            named = option.group(1).replace("-", "_") if option else None
            given = named is None or named in {f.replace("-", "_") for f in flags} or config_path is None
            raise ConfigError(f"{'command line' if given else config_path}: {message}")

    wrapped = functools.partial(argparse.ArgumentDefaultsHelpFormatter, width=HELP_WIDTH)  # stored: one width
    parser = RecipeParser(dataclass_types, formatter_class=wrapped)
    if args is None and wants_help(argv):  # a recipe's --help: printed, and stored for the next time
        text = parser.format_help()
        store_help(sys.argv[0], argv, text)
        sys.stdout.write(text)
        sys.exit(0)
    try:
        if recipe is None:
            parsed = parser.parse_args_and_config(args=argv)
        else:
            import tempfile

            with tempfile.TemporaryDirectory() as folder:  # TrlParser reads one file: the recipe read_recipe merged
                merged = os.path.join(folder, os.path.basename(config_path))
                with open(merged, "w") as f:
                    yaml.safe_dump(recipe, f, sort_keys=False)
                parsed = parser.parse_args_and_config(args=_with_config(argv, merged))
    except ConfigError:
        raise
    except ValueError as err:
        unknown = [name for name in flags if name not in recipe_fields(dataclass_types)]
        where = "command line: " if unknown else f"{config_path}: " if config_path else ""
        raise ConfigError(where + str(err).strip().splitlines()[0] + _other_stage_hint(unknown)) from err
    for obj in parsed:
        output_dir = getattr(obj, "output_dir", None)
        if isinstance(output_dir, str) and os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise ConfigError(f"output_dir {output_dir}: is a file, not a folder")
    return parsed


def resolved_recipe(parsed, args: list[str] | None = None) -> dict:
    """The recipe as run: the YAML file's mapping (in its order) with the command line's values on top, secrets
    (`*token*` keys) and `resume_from_checkpoint` left out. Saved as `recipe.yaml`, it reruns the same configuration
    with `--config`."""
    import enum

    argv = sys.argv[1:] if args is None else list(args)
    config_path = _config_path(argv)
    given = [arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")]
    values = _sources_from_the_command_line(read_recipe(config_path), given) if config_path is not None else {}
    for name in given:
        owner = next((obj for obj in parsed if name != "config" and hasattr(obj, name)), None)
        if owner is not None:
            values[name] = getattr(owner, name)

    def plain(value):
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

    session = ("resume_from_checkpoint",)  # how this session started, not what the run is
    return {key: plain(value) for key, value in values.items() if "token" not in key and key not in session}


def _sources_from_the_command_line(recipe: dict, flags: list[str]) -> dict:
    """The recipe file's mapping without its `datasets` where the command line gives `dataset_name`: the two are
    forms of one setting, the sources, so the command line's replaces the file's as for any other setting (a YAML
    `datasets:` mixture cannot be written on a command line)."""
    if "datasets" in recipe and "dataset_name" in {flag.replace("-", "_") for flag in flags}:
        return {key: value for key, value in recipe.items() if key != "datasets"}
    return recipe


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


PARENT_KEY = "parent"  # a recipe that names a parent recipe: the parent's mapping with this one's keys on top


def _read_yaml(path: str) -> dict:
    """The recipe file as a mapping; a missing file, invalid YAML or a non-mapping is a ConfigError naming it."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such recipe file")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of option: value")
    return config


def read_recipe(path: str, known: set[str] | None = None, _children: tuple[str, ...] = ()) -> dict:
    """The recipe at `path` as one mapping. A recipe with `parent: <file>` (relative to its own folder) is the
    parent's mapping, in its order, with this recipe's keys on top (a key set to `null` removes the parent's value,
    so the option takes its default): a base-LM variant states only how it differs from the recipe it derives from.
    With `known`, an unknown key in any file of the chain is a ConfigError naming that file."""
    config = _read_yaml(path)
    if known is not None:
        unknown = sorted(set(config) - known - {"env", PARENT_KEY})
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}{_other_stage_hint(unknown)}")
    parent = config.pop(PARENT_KEY, None)
    if parent is None:
        return config
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: {PARENT_KEY} must be the path of a recipe file, got {parent!r}")
    parent_path = os.path.normpath(os.path.join(os.path.dirname(path), parent))
    if os.path.abspath(parent_path) in (os.path.abspath(p) for p in (path, *_children)):
        raise ConfigError(f"{path}: {PARENT_KEY} {parent!r} leads back to itself")
    merged = read_recipe(parent_path, known, (*_children, path)) | config
    return {key: value for key, value in merged.items() if not (value is None and key in config)}


def _with_config(argv: list[str], path: str) -> list[str]:
    """`argv` with its --config value replaced by `path`."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--config" and i + 1 < len(argv):
            out += ["--config", path]
            skip = True
        elif arg.startswith("--config="):
            out.append(f"--config={path}")
        else:
            out.append(arg)
    return out


@dataclass
class TokenizeArguments(UnitTokenizerArguments):
    """Audio → units: which audio, which feature model and layer, which k-means, and how the output is written."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A Hub audio dataset, a save_to_disk folder, or a folder / glob of audio files."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split to tokenise."})
    streaming: bool = field(default=False, metadata={"help": "Stream a Hub dataset instead of downloading it."})
    audio_columns: list[str] | None = field(
        default=None,
        metadata={"help": "Audio columns to tokenise (default: every audio column, e.g. prompt/chosen/rejected)."},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the units dataset is written."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into an output_dir that holds a tokenisation with other settings."}
    )
    keep_durations: bool = field(default=False, metadata={"help": "Also store the run length of each unit."})
    shard_size: int = field(default=1000, metadata={"help": "Files per output shard (the unit of resumption)."})
    max_batch_seconds: float = field(default=100.0, metadata={"help": "Audio seconds per feature batch."})
    segmentation: str = field(
        default="vad",
        metadata={
            "help": "How a file longer than max_segment_seconds is cut, one output row per segment with its start / "
            "end seconds: vad (silero-vad speech chunks joined up to max_segment_seconds, cut at silences; silence "
            "between segments left out) or fixed (windows with segment_context_seconds of context each side; the "
            "kept frames add up to the whole file's). Needs one audio column."
        },
    )
    max_segment_seconds: float | None = field(
        default=60.0,
        metadata={
            "help": "Longest audio the feature model sees at once (Libri-Light's cut_by_vad makes ~60 s sequences); "
            "null: each file whole, whatever its length, and no start / end columns."
        },
    )
    segment_context_seconds: float = field(
        default=2.0,
        metadata={
            "help": "segmentation fixed: audio seen but not kept on each side of a window, so each row holds "
            "max_segment_seconds minus twice this."
        },
    )
    vad_threshold: float = field(
        default=0.5, metadata={"help": "segmentation vad: silero-vad speech probability threshold (its default)."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "auto (bfloat16 on a GPU that has it, else float16; float32 on CPU), or a dtype."},
    )
    bf16_native_only: bool = field(
        default=True,
        metadata={"help": "Run bfloat16 only where the hardware computes it natively; false: wherever asked."},
    )
    device: str | None = field(default=None, metadata={"help": "Default: this process's accelerate device."})
    # Fitting a k-means (recipes/fit_kmeans.py)
    num_clusters: int = field(default=500, metadata={"help": "fit_kmeans: number of centroids (paper: 500)."})
    sample_hours: float = field(default=10.0, metadata={"help": "fit_kmeans: hours of audio sampled for fitting."})
    kmeans_steps: int = field(default=300, metadata={"help": "fit_kmeans: mini-batches of the fit."})
    kmeans_batch_size: int = field(default=10000, metadata={"help": "fit_kmeans: frames per mini-batch."})
    overwrite_kmeans: bool = field(default=False, metadata={"help": "fit_kmeans: replace an existing kmeans_path."})
    seed: int = field(default=0, metadata={"help": "Sampling and initialisation seed."})

    def __post_init__(self):
        for name in ("dataset_name", "kmeans_path"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required")
        self.check_backend()
        if self.shard_size < 1 or self.max_batch_seconds <= 0:
            raise ConfigError("shard_size and max_batch_seconds must be positive")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ConfigError(f"dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")
        if self.segmentation not in ("vad", "fixed"):
            raise ConfigError(f"segmentation must be vad or fixed, got {self.segmentation!r}")
        if self.max_segment_seconds is not None and not 0 < self.max_segment_seconds < math.inf:
            raise ConfigError(f"max_segment_seconds must be positive seconds or null, got {self.max_segment_seconds}")
        if not 0 <= self.segment_context_seconds < math.inf:
            raise ConfigError(f"segment_context_seconds must be seconds >= 0, got {self.segment_context_seconds}")
        if not 0 < self.vad_threshold < 1:
            raise ConfigError(f"vad_threshold must be between 0 and 1, got {self.vad_threshold}")

    def settings(self) -> dict:
        """What decides the units: a rerun into the same output_dir must match these."""
        return {
            "dataset_name": self.dataset_name,
            "dataset_split": self.dataset_split,
            "backend": self.backend,
            "feature_model": self.feature_model if self.backend == "hubert" else None,
            "layer": self.layer if self.backend == "hubert" else None,
            "mfcc_frame_rate": self.mfcc_frame_rate if self.backend == "mfcc" else None,
            "kmeans_path": self.kmeans_path if "://" in self.kmeans_path else os.path.abspath(self.kmeans_path),
            "audio_columns": self.audio_columns,
            "dedup": self.dedup,
            "keep_durations": self.keep_durations,
            "shard_size": self.shard_size,
            "max_segment_seconds": self.max_segment_seconds,
            "segmentation": (method := self.segmentation if self.max_segment_seconds else None),
            "segment_context_seconds": self.segment_context_seconds if method == "fixed" else None,
            "vad_threshold": self.vad_threshold if method == "vad" else None,
        }


@dataclass
class DemoCorpusArguments:
    """recipes/make_demo_corpus.py: build (or verify) the offline spoken demo corpus."""

    output_dir: str = field(default="data/demo", metadata={"help": "Where the corpus is written."})
    seed: int = field(default=0, metadata={"help": "Seed of the texts, voices' assignment and k-means."})
    verify: str | None = field(
        default=None,
        metadata={
            "help": "A built corpus (e.g. data/demo): rebuild it with its seed in a temporary folder and compare."
        },
    )
    only: list[str] | None = field(
        default=None, metadata={"help": "Build only these datasets (e.g. eval/swuggy pretrain/validation)."}
    )
    max_rows: int | None = field(
        default=None, metadata={"help": "Build only the first rows of each dataset (a multiple of 32: audio chunks)."}
    )
    kmeans_path: str | None = field(
        default=None, metadata={"help": "Use these centroids instead of fitting a k-means on the training stories."}
    )
    num_workers: int = field(default=2, metadata={"help": "espeak-ng processes."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace a corpus already in output_dir."})

    def __post_init__(self):
        if self.num_workers < 1:
            raise ConfigError(f"num_workers must be at least 1, got {self.num_workers}")


def _check_demo_options(args, recipe_files: Sequence[str], step_counts: Sequence[str]) -> None:
    """A demo's options: each of `recipe_files` names an existing file, each of `step_counts` is None or ≥ 1."""
    for name in recipe_files:
        if not os.path.isfile(getattr(args, name)):
            raise ConfigError(f"{name}: no such recipe file {getattr(args, name)!r}")
    for name in step_counts:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(args, name)}")


@dataclass
class DemoArguments:
    """recipes/demo.py: the whole pipeline (pretrain → evaluate → DPO → evaluate) on the demo corpus."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Models, results and plot go here."})
    pretrain_config: str = field(default="recipes/demo/pretrain.yaml", metadata={"help": "Pretraining recipe."})
    dpo_config: str = field(default="recipes/demo/dpo.yaml", metadata={"help": "DPO recipe."})
    eval_config: str = field(default="recipes/demo/eval.yaml", metadata={"help": "Evaluation recipe."})
    pretrain_time_budget: str | None = field(
        default=None, metadata={"help": "Override the pretraining time_budget (e.g. 00:10:00 on a slower machine)."}
    )
    dpo_time_budget: str | None = field(default=None, metadata={"help": "Override the DPO time_budget."})
    pretrain_max_steps: int | None = field(
        default=None,
        metadata={"help": "Stop pretraining after this many steps (quick checks; the budget still caps)."},
    )
    dpo_max_steps: int | None = field(default=None, metadata={"help": "Stop DPO after this many steps."})
    seed: int | None = field(default=None, metadata={"help": "Override both training seeds."})

    def __post_init__(self):
        _check_demo_options(
            self, ("pretrain_config", "dpo_config", "eval_config"), ("pretrain_max_steps", "dpo_max_steps")
        )


@dataclass
class SimsDemoArguments:
    """recipes/demo_sims.py: interleaved (SIMS) pretraining → speech-only and cross-modal evaluation on the demo
    corpus."""

    output_dir: str = field(default="outputs/demo-sims", metadata={"help": "Model, results and plot go here."})
    pretrain_config: str = field(default="recipes/demo-sims/pretrain.yaml", metadata={"help": "Pretraining recipe."})
    eval_config: str = field(default="recipes/demo-sims/eval.yaml", metadata={"help": "Evaluation recipe."})
    pretrain_time_budget: str | None = field(
        default=None, metadata={"help": "Override the pretraining time_budget (e.g. 00:10:00 on a slower machine)."}
    )
    pretrain_max_steps: int | None = field(
        default=None,
        metadata={"help": "Stop pretraining after this many steps (quick checks; the budget still caps)."},
    )
    seed: int | None = field(default=None, metadata={"help": "Override the training seed."})

    def __post_init__(self):
        _check_demo_options(self, ("pretrain_config", "eval_config"), ("pretrain_max_steps",))


@dataclass
class PushArguments:
    """recipes/push_to_hub.py: push a trained model folder (e.g. after evaluation) with a refreshed model card."""

    model_dir: str | None = field(default=None, metadata={"help": "A trained output folder (with run_summary.json)."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Target repo, `namespace/name` or `name` (default: the folder's name)."}
    )
    hub_token: str | None = field(default=None, metadata={"help": "Token with write access (default: logged in)."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the repo private."})
    hub_revision: str | None = field(default=None, metadata={"help": "Branch to push to."})
    commit_message: str = field(
        default="slam-recipes: model, tokenizer and card", metadata={"help": "Commit message."}
    )

    def __post_init__(self):
        if not self.model_dir:
            raise ConfigError("model_dir is required (a trained output folder)")
        if not os.path.isfile(os.path.join(self.model_dir, "config.json")):
            raise ConfigError(f"model_dir {self.model_dir}: no config.json; not a trained model folder")
