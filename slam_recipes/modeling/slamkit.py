"""Convert a slamkit checkpoint (the Slamming authors' `UnitLM`, e.g. slprl/slam) into a plain causal LM + unit tokenizer.

slamkit's layout (slp-rl/slamkit: slamkit/model/unit_lm.py, slamkit/tokeniser/unit_tokeniser.py):
- `config.json` has `model_type: speech_language_model`; `base_config` holds the base LM's whole config (with its own
  `model_type`, e.g. qwen2); the top-level `vocab_size` is the unit vocabulary the embeddings were resized to, while
  `base_config.vocab_size` may still be the text LM's (the resize happens on a copy of the config).
- The weights are the base LM's state dict under the `lm.` prefix (`UnitLM.base_model_prefix`); a tied `lm_head` is
  usually left out.
- The vocabulary is PAD 0, `<S>` 1 (BOS and EOS), unit k = id k + 2, as in `slam_recipes.units`, so the unit count is
  `vocab_size - 2`. slamkit keeps no unit count in the model folder; a `tokeniser_config.json` beside it is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any

from slam_recipes.errors import ConfigError, first_line
from slam_recipes.units import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID

SLAMKIT_MODEL_TYPE = "speech_language_model"
WEIGHT_PREFIX = "lm."
CONFIG_FILE = "config.json"
TOKENISER_CONFIG_FILE = "tokeniser_config.json"  # written by slamkit's UnitTokeniser.save_pretrained
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX)
HUB_PATTERNS = [
    CONFIG_FILE,
    TOKENISER_CONFIG_FILE,
    "*.safetensors",
    SAFETENSORS_INDEX,
    "pytorch_model*.bin",
    TORCH_INDEX,
]


@dataclass
class SlamkitConvertArguments:
    """slamkit checkpoint → plain transformers causal LM folder + unit tokenizer."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The slamkit checkpoint: a local folder or a Hub id (slprl/slam)."}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub branch, tag or commit of model_name_or_path."})
    output_dir: str | None = field(default=None, metadata={"help": "Where the converted model + tokenizer go."})
    dtype: str | None = field(
        default=None, metadata={"help": "Cast the weights (float32, bfloat16, float16); default: keep their dtype."}
    )
    num_units: int | None = field(
        default=None, metadata={"help": "Expected unit count, checked against the checkpoint (default: inferred)."}
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})

    def __post_init__(self):
        for name in ("model_name_or_path", "output_dir"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required")


def convert_slamkit_checkpoint(
    source: str,
    output_dir: str,
    *,
    revision: str | None = None,
    dtype: str | None = None,
    num_units: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert `source` (folder or Hub id) and save the model (safetensors) + unit tokenizer to `output_dir`.

    Everything is read and checked before anything is written; the folder appears whole (written beside it, then
    renamed) or not at all. Returns a summary: source, output_dir, model_type, num_parameters, num_units, dtype.
    """
    from slam_recipes.modeling.unit_lm import count_parameters
    from slam_recipes.units import build_unit_tokenizer

    _check_output_dir(output_dir, overwrite)
    folder = resolve_slamkit_source(source, revision)
    if _same_or_inside(folder, output_dir):
        raise ConfigError(f"output_dir {output_dir} would replace the source checkpoint {folder}")
    model, units = load_slamkit_model(folder, dtype=dtype, num_units=num_units)
    tokenizer = build_unit_tokenizer(units)

    def write(tmp: str) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    _write_atomically(output_dir, write)
    return {
        "source": source,
        "output_dir": output_dir,
        "model_type": model.config.model_type,
        "num_parameters": count_parameters(model),
        "num_units": units,
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def resolve_slamkit_source(source: str, revision: str | None = None) -> str:
    """A local folder as is; anything else is a Hub id whose config and weights are downloaded (or found in cache)."""
    if os.path.isdir(source):
        return source
    if os.path.exists(source) or os.path.isabs(source) or source.startswith((".", "~")):
        raise ConfigError(f"{source}: no such folder")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(source, revision=revision, allow_patterns=HUB_PATTERNS)
    except (OSError, ValueError) as err:  # not found, offline without a cached copy, or not a valid repo id
        raise ConfigError(
            f"{source}: not a local folder and cannot be fetched from the Hub: {first_line(err)}"
        ) from err


def read_slamkit_config(folder: str, num_units: int | None = None) -> tuple[dict[str, Any], int]:
    """The base LM's config dict (its `vocab_size` set to the unit vocabulary) and the number of units."""
    path = os.path.join(folder, CONFIG_FILE)
    config = _read_json(path, f"{folder}: no {CONFIG_FILE}")
    model_type = config.get("model_type")
    if model_type != SLAMKIT_MODEL_TYPE:
        raise ConfigError(
            f"{path}: model_type is {model_type!r}, expected {SLAMKIT_MODEL_TYPE!r} (a slamkit UnitLM checkpoint)"
        )
    base = config.get("base_config")
    if not isinstance(base, dict) or not base:
        raise ConfigError(f"{path}: no base_config (the base LM's config)")
    if not base.get("model_type"):
        raise ConfigError(f"{path}: base_config has no model_type")
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab <= NUM_SPECIAL:
        raise ConfigError(f"{path}: vocab_size is {vocab!r}, expected the unit vocabulary size (num_units + 2)")
    for key, expected in (("pad_token_id", PAD_ID), ("bos_token_id", BOS_ID), ("eos_token_id", EOS_ID)):
        if base.get(key) not in (None, expected):
            raise ConfigError(
                f"{path}: base_config {key} is {base[key]}, the unit layout has {expected} (PAD 0, <S> 1, unit k = k+2)"
            )
    units = vocab - NUM_SPECIAL
    tokeniser_path = os.path.join(folder, TOKENISER_CONFIG_FILE)
    if os.path.isfile(tokeniser_path):
        tokeniser = _read_json(tokeniser_path)
        if tokeniser.get("pad_token_id", PAD_ID) != PAD_ID or tokeniser.get("bos_eos_token_id", BOS_ID) != BOS_ID:
            raise ConfigError(f"{tokeniser_path}: special token ids differ from the unit layout (PAD 0, <S> 1)")
        if tokeniser.get("num_units", units) != units:
            raise ConfigError(
                f"{tokeniser_path}: num_units is {tokeniser['num_units']}, but {path} has vocab_size {vocab} "
                f"({units} units)"
            )
    if num_units is not None and num_units != units:
        raise ConfigError(f"{path}: vocab_size {vocab} holds {units} units, expected num_units={num_units}")
    base = {k: v for k, v in base.items() if not k.startswith("_") and k not in ("torch_dtype", "dtype")}
    base["vocab_size"] = vocab
    return base, units


def read_slamkit_weights(folder: str) -> dict[str, Any]:
    """The checkpoint's state dict with the `lm.` prefix removed."""
    state_dict = _read_weights(folder)
    outside = [k for k in state_dict if not k.startswith(WEIGHT_PREFIX)]
    if len(outside) == len(state_dict):
        raise ConfigError(f"{folder}: weights are not under the {WEIGHT_PREFIX!r} prefix (first key: {outside[0]})")
    if outside:
        raise ConfigError(f"{folder}: {len(outside)} weights outside the {WEIGHT_PREFIX!r} prefix, e.g. {outside[0]}")
    return {k.removeprefix(WEIGHT_PREFIX): v for k, v in state_dict.items()}


def load_slamkit_model(folder: str, *, dtype: str | None = None, num_units: int | None = None) -> tuple[Any, int]:
    """The base LM of a local slamkit checkpoint with its weights loaded and checked, and the number of units.

    Weights keep their dtype unless `dtype` is given; every weight of the base model must be present (a head tied to
    the input embeddings may be absent) and no other weight may be. PAD/BOS/EOS are set to the unit layout's ids.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from slam_recipes.modeling.unit_lm import set_unit_special_tokens

    base, units = read_slamkit_config(folder, num_units)
    state_dict = read_slamkit_weights(folder)
    target = _target_dtype(folder, state_dict, dtype)
    try:
        config = AutoConfig.for_model(**base)
        model = AutoModelForCausalLM.from_config(config, dtype=target)
    except (KeyError, TypeError, ValueError) as err:  # unknown model_type, or not a causal LM
        raise ConfigError(f"{folder}/{CONFIG_FILE}: cannot build the base model: {first_line(err)}") from err
    _check_state_dict(folder, model, state_dict)
    try:
        model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ConfigError(
            f"{folder}: weights do not fit the base {config.model_type} model: {_size_mismatch(err)}"
        ) from err
    set_unit_special_tokens(model)
    return model.eval(), units


# -- helpers -----------------------------------------------------------------------------------------------------------
def _read_json(path: str, missing_message: str | None = None) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(missing_message or f"{path}: no such file")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not valid JSON: {first_line(err)}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _check_state_dict(folder: str, model, state_dict: dict[str, Any]) -> None:
    """Exactly the model's weights (a tied copy may be absent, else must be equal), embeddings sized to the vocabulary."""
    import torch

    model_type, loaded = model.config.model_type, set(state_dict)
    expected = set(model.state_dict())
    unexpected = sorted(loaded - expected)
    if unexpected:
        raise ConfigError(
            f"{folder}: {len(unexpected)} unexpected weights for the base {model_type} model, e.g. {unexpected[0]}"
        )
    tied = _tied_groups(model)
    missing = sorted(name for name in expected - loaded if not tied.get(name, set()) & loaded)
    if missing:
        raise ConfigError(
            f"{folder}: {len(missing)} weights missing for the base {model_type} model, e.g. {missing[0]}"
        )
    for group in {frozenset(names | {name}) for name, names in tied.items()}:
        present = sorted(group & loaded)
        if any(not torch.equal(state_dict[present[0]], state_dict[name]) for name in present[1:]):
            raise ConfigError(f"{folder}: {present[0]} and {present[1]} differ, but the config ties them")
    embeddings = model.get_input_embeddings().weight
    embed_name = next(name for name, param in model.named_parameters(remove_duplicate=False) if param is embeddings)
    rows = next(state_dict[n].shape[0] for n in sorted({embed_name} | tied.get(embed_name, set())) if n in loaded)
    if rows != model.config.vocab_size:
        raise ConfigError(
            f"{folder}: {embed_name} has {rows} rows, but {CONFIG_FILE} has vocab_size {model.config.vocab_size} "
            f"(num_units + 2)"
        )


def _read_weights(folder: str) -> dict[str, Any]:
    """The raw state dict from model.safetensors, a sharded index, or pytorch_model.bin (first found, in that order)."""
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if not name.endswith(".index.json"):
            return _load_weight_file(path)
        weight_map = _read_json(path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConfigError(f"{path}: no weight_map")
        state_dict = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = os.path.join(folder, shard)
            if not os.path.isfile(shard_path):
                raise ConfigError(f"{path}: names shard {shard}, which is missing")
            state_dict.update(_load_weight_file(shard_path))
        return state_dict
    raise ConfigError(f"{folder}: no weights ({', '.join(WEIGHT_FILES[:-1])} or {WEIGHT_FILES[-1]})")


def _load_weight_file(path: str) -> dict[str, Any]:
    import torch

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state_dict = load_file(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors and torch.load raise their own types for a corrupt file
        raise ConfigError(f"{path}: cannot read the weights: {first_line(err)}") from err
    if not isinstance(state_dict, dict) or not state_dict:
        raise ConfigError(f"{path}: holds no state dict")
    return state_dict


def _target_dtype(folder: str, state_dict: dict[str, Any], dtype: str | None):
    """The requested dtype, else the weights' own one (which must be a single floating dtype)."""
    import torch

    if dtype is not None:
        target = getattr(torch, dtype, None)
        if not isinstance(target, torch.dtype) or not target.is_floating_point:
            raise ConfigError(f"dtype must be a floating torch dtype such as float32 or bfloat16, got {dtype!r}")
        return target
    found = sorted({str(t.dtype) for t in state_dict.values() if t.is_floating_point()})
    if not found:
        raise ConfigError(f"{folder}: no floating-point weights")
    if len(found) > 1:
        raise ConfigError(f"{folder}: weights mix dtypes {found}; pass dtype to choose one")
    return getattr(torch, found[0].removeprefix("torch."))


def _tied_groups(model) -> dict[str, set[str]]:
    """For each parameter name, the other names of the same (tied) parameter."""
    names: dict[int, set[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), set()).add(name)
    return {name: group - {name} for group in names.values() if len(group) > 1 for name in group}


def _size_mismatch(err: RuntimeError) -> str:
    lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
    return lines[0] if lines else first_line(err)


def _same_or_inside(source: str, output_dir: str) -> bool:
    source, output_dir = os.path.realpath(source), os.path.realpath(output_dir)
    return os.path.commonpath([source, output_dir]) == output_dir


def _check_output_dir(output_dir: str, overwrite: bool) -> None:
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"output_dir {output_dir} exists and is not a folder")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ConfigError(f"output_dir {output_dir} exists and is not empty (pass overwrite_output_dir to replace it)")


def _write_atomically(output_dir: str, write) -> None:
    """Run `write(tmp)` on a fresh folder beside `output_dir`, then move it into place (replacing the old one)."""
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    name, token = os.path.basename(output_dir), uuid.uuid4().hex[:8]
    tmp, old = os.path.join(parent, f".{name}.tmp-{token}"), os.path.join(parent, f".{name}.old-{token}")
    os.mkdir(tmp)  # not tempfile.mkdtemp: its 0700 mode would stay on the saved folder
    try:
        write(tmp)
        if os.path.isdir(output_dir):
            os.rename(output_dir, old)
        os.rename(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.isdir(old) and not os.path.exists(output_dir):
            os.rename(old, output_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
