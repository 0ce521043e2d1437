"""The speech LM: a plain transformers causal LM whose vocabulary is the unit vocabulary (TWIST init or random)."""

from __future__ import annotations

import json
import os
from typing import Any

from slam_recipes.errors import ConfigError, first_line
from slam_recipes.units import BOS_ID, EOS_ID, PAD_ID, build_unit_tokenizer, vocab_size

# Keys that go to `from_pretrained` / `from_config` rather than into the model config.
_LOADING_KWARGS = ("attn_implementation", "dtype", "revision")


def build_unit_lm(model_name_or_path: str, num_units: int = 500, twist_init: bool = True, **config_overrides: Any):
    """Return a model of the base LM's own causal-LM class with a `num_units + 2` token vocabulary.

    `twist_init=True` loads the text LM's weights, then resizes the embeddings to the unit vocabulary (TWIST);
    `False` builds the same architecture from its config alone (random init). Other keyword arguments override
    config fields (`rope_theta=10000`, `max_position_embeddings=...`) or reach loading (`attn_implementation`,
    `dtype`, `revision`).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    overrides = dict(config_overrides)
    if "torch_dtype" in overrides:  # the pre-v5 name
        overrides["dtype"] = overrides.pop("torch_dtype")
    loading = {k: overrides.pop(k) for k in _LOADING_KWARGS if overrides.get(k) is not None}
    for key in _LOADING_KWARGS:
        overrides.pop(key, None)
    register_attention(loading.get("attn_implementation"))

    check_unit_checkpoint(model_name_or_path, num_units)
    try:
        config = AutoConfig.from_pretrained(model_name_or_path, revision=loading.get("revision"))
    except (OSError, ValueError) as err:  # no such folder, no such Hub repo, or offline without a cached copy
        raise model_load_error(model_name_or_path, err) from err
    apply_config_overrides(config, overrides, model_name_or_path)
    # Our special ids before the model is built: an embedding built with the base's padding_idx (OPT: 1, our `<S>`)
    # would keep that row at zero and never train it through the input lookup.
    for cfg in (config, config.get_text_config()):  # the same object for a plain text LM
        cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = PAD_ID, BOS_ID, EOS_ID
    if twist_init:
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, config=config, **loading)
        model.resize_token_embeddings(vocab_size(num_units), mean_resizing=False)
    else:
        loading.pop("revision", None)
        if loading.get("dtype") == "auto":
            loading.pop("dtype")
        config.vocab_size = vocab_size(num_units)
        model = AutoModelForCausalLM.from_config(config, **loading)
    set_unit_special_tokens(model)
    embeddings = model.get_input_embeddings()
    if getattr(embeddings, "padding_idx", None) is not None:  # a family whose embedding has one: ours, PAD
        embeddings.padding_idx = PAD_ID
    return model


def register_attention(attn_implementation: str | None) -> None:
    """Register `sdpa_varlen` (`slam_recipes.modeling.attention`) with transformers when a model asks for it by name."""
    if attn_implementation == "sdpa_varlen":
        import slam_recipes.modeling.attention  # noqa: F401  (importing it registers the kernel)


def apply_config_overrides(config, overrides: dict[str, Any], source: str) -> None:
    """Set config fields from the recipe; an unknown field is an error rather than a silently ignored attribute."""
    for key, value in overrides.items():
        if key == "rope_theta" and isinstance(getattr(config, "rope_parameters", None), dict):
            config.rope_parameters["rope_theta"] = value  # transformers v5 keeps rope_theta inside rope_parameters
        elif hasattr(config, key):
            setattr(config, key, value)
        else:
            raise ConfigError(
                f"model config override {key!r} is not a field of the {config.model_type} config of {source}"
            )


def set_unit_special_tokens(model) -> None:
    """PAD 0, BOS 1, EOS 1 in the config and the generation config."""
    for cfg in (model.config, model.generation_config):
        if cfg is None:
            continue
        cfg.pad_token_id = PAD_ID
        cfg.bos_token_id = BOS_ID
        cfg.eos_token_id = EOS_ID


def _unit_vocab(path: str) -> dict | None:
    """The vocabulary of a local folder's unit tokenizer, or None when it has none (e.g. a text LM)."""
    tokenizer_file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tokenizer_file):
        return None
    with open(tokenizer_file) as f:
        vocab = json.load(f).get("model", {}).get("vocab", {})
    return vocab if "<Un0>" in vocab else None


def check_unit_checkpoint(model_name_or_path: str, num_units: int) -> None:
    """A local checkpoint that already has a unit tokenizer must have the vocabulary the recipe asks for."""
    vocab = _unit_vocab(model_name_or_path)
    if vocab is not None and len(vocab) != vocab_size(num_units):
        raise ConfigError(
            f"tokenizer/model vocabulary mismatch: {model_name_or_path} has a unit tokenizer of "
            f"{len(vocab) - 2} units, the recipe asks for num_units={num_units}"
        )


def load_or_build_tokenizer(model_name_or_path: str, num_units: int, tokenizer_name_or_path: str | None = None):
    """The given tokenizer, else the checkpoint's own unit tokenizer, else a new one for `num_units`."""
    from transformers import AutoTokenizer

    if tokenizer_name_or_path:
        return AutoTokenizer.from_pretrained(tokenizer_name_or_path)
    if _unit_vocab(model_name_or_path) is not None:
        return AutoTokenizer.from_pretrained(model_name_or_path)
    return build_unit_tokenizer(num_units)


def check_vocab(tokenizer, model) -> None:
    """The tokenizer and the model must agree on the vocabulary size."""
    if len(tokenizer) != model.config.vocab_size:
        raise ConfigError(
            f"tokenizer/model vocabulary mismatch: tokenizer has {len(tokenizer)} tokens, "
            f"model vocab_size is {model.config.vocab_size}"
        )


def count_parameters(model) -> int:
    """Parameters counted once each (tied embeddings count once), as in the paper's Table 6."""
    return sum(p.numel() for p in model.parameters())


def flops_per_token(num_parameters: int, num_layers: int, hidden_size: int, context_length: int) -> float:
    """Training FLOPs per token (the PaLM/Chinchilla count): 6N for the weights' forward + backward, plus
    12·layers·hidden·context for attention over the whole context square (not reduced for the causal mask, nor for
    packed documents, whose kernels skip the blocks between documents).

    N is every parameter, so it slightly over-counts the matmuls torch's FLOP counter sees: a tied embedding stands
    for the head's matmul, but norms, biases and lookup-only tables (an untied input embedding, learned positions)
    add 6 each: +0.018 % for the Slam model, +1.6 % for OPT-125M (tests/test_model.py)."""
    return 6 * num_parameters + 12 * num_layers * hidden_size * context_length


def model_flops_per_token(model, context_length: int) -> float:
    config = model.config.get_text_config()
    return flops_per_token(count_parameters(model), config.num_hidden_layers, config.hidden_size, context_length)


def check_unit_vocab(config, num_units: int, what: str) -> None:
    """The speech LM's vocabulary check: `config` (a model config; its text config for a composite model) must have
    the unit vocabulary, num_units + 2 tokens, or a ConfigError names `what` and both sizes."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if config.vocab_size != vocab_size(num_units):
        raise ConfigError(
            f"tokenizer/model vocabulary mismatch: {what} has vocab_size {config.vocab_size}, the unit tokenizer has "
            f"{vocab_size(num_units)} (num_units={num_units}); is num_units the one it was trained with?"
        )


def model_load_error(model_name_or_path: str, err: BaseException) -> ConfigError:
    """The one-line error for a model whose config cannot be loaded: a folder that holds no `config.json`, a local
    path that does not exist (absolute, `./`, `~`, or under an existing folder: `outputs/run` when `outputs/` is
    here), else the loader's own first line (a Hub name that is wrong, or offline without a cached copy)."""
    path = os.path.expanduser(model_name_or_path)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        return ConfigError(f"{model_name_or_path}: no config.json in this folder: not a saved model")
    if not os.path.exists(path):
        if os.path.isabs(path) or model_name_or_path.startswith((".", "~")):
            return ConfigError(f"{model_name_or_path}: no such folder")
        parent = os.path.dirname(path)
        if parent and os.path.isdir(parent):
            return ConfigError(f"{model_name_or_path}: no such folder, nor a Hub model ({first_line(err)})")
    return ConfigError(f"{model_name_or_path}: cannot load the model: {first_line(err)}")


def check_unit_lm(model_name_or_path: str, num_units: int, revision: str | None = None) -> None:
    """A stage that starts from a trained speech LM (DPO, evaluation) refuses a checkpoint whose vocabulary is not
    the units' (`check_unit_vocab`), before its weights are loaded."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_name_or_path, revision=revision)
    except (OSError, ValueError) as err:  # no such folder, no such Hub repo, or offline without a cached copy
        raise model_load_error(model_name_or_path, err) from err
    check_unit_vocab(config, num_units, model_name_or_path)


def embedding_module_names(model) -> list[str]:
    """Names (last component) of the input embedding and output head modules, e.g. ['embed_tokens', 'lm_head']."""
    targets = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if id(module) in targets})


def build_peft_config(model_args, model=None, train_embeddings: bool = False):
    """The LoRA config of `model_args` (a `trl.ModelConfig`: `use_peft`, `lora_r`, `lora_alpha`, ...) through
    `trl.get_peft_config`, or None without `use_peft`. `train_embeddings` also trains `model`'s unit embeddings and
    head in full (`modules_to_save`: needed when the vocabulary is new, i.e. TWIST pretraining)."""
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is not None and train_embeddings:
        save = list(config.modules_to_save or [])
        config.modules_to_save = save + [name for name in embedding_module_names(model) if name not in save]
    return config


def make_reference_model(model):
    """A frozen copy of the policy for DPO: works for models loaded from a folder and for models built in memory
    (TRL would otherwise reload the reference by the config's Hub name)."""
    import copy

    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def load_speech_lm(model_name_or_path: str, num_units: int, **loading):
    """A trained speech LM for scoring: checked to have the unit vocabulary (`check_unit_lm`, before its weights are
    read), then loaded by `load_causal_lm` with `loading` (revision, dtype, bf16_native_only, attn_implementation,
    device)."""
    check_unit_lm(model_name_or_path, num_units, loading.get("revision"))
    return load_causal_lm(model_name_or_path, **loading)


def load_causal_lm(
    model_name_or_path: str,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    bf16_native_only: bool = True,
    attn_implementation: str | None = None,
    device: str | None = None,
):
    """A causal LM for inference, in eval mode, on `device` (default: CUDA when available). `dtype="auto"` is
    bfloat16 on a GPU that computes it natively, float16 on one that does not, float32 on CPU; `bfloat16` falls back
    the same way unless `bf16_native_only` is False (see `slam_recipes.precision.choose_dtype`)."""
    from transformers import AutoModelForCausalLM

    from slam_recipes.precision import default_device, load_dtype

    device = default_device(device)
    kwargs: dict[str, Any] = {"dtype": load_dtype(dtype, device, bf16_native_only, "speech LM")}
    if revision:
        kwargs["revision"] = revision
    if attn_implementation:
        register_attention(attn_implementation)
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
    return model.to(device).eval()
