"""The vocabulary of a speech–text interleaved LM (SIMS: Maimon, Hassid, Roth, Adi 2025, "Scaling Analysis of
Interleaved Speech-Text Language Models", arXiv 2504.02398; slamkit's `InterleavingTokeniser`).

Unlike TWIST, which replaces a text LM's vocabulary with the units, an interleaved model keeps the text LM's own
tokenizer and embeddings and gains `num_units` unit tokens `<Un0>`…`<Un{num_units-1}>` and two modality markers,
`<speech>` and `<text>`, as added tokens with consecutive ids. Their embedding rows (and output rows, when untied)
are initialised by transformers' `mean_resizing`: drawn around the mean of the text tokens' rows, with their
covariance scaled by 1e-9. A model and tokenizer extended here save and load with plain `AutoModelForCausalLM` /
`AutoTokenizer`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from slam_recipes.errors import ConfigError
from slam_recipes.units import SPEECH_MARKER, TEXT_MARKER, unit_token

_UNIT_TOKEN = re.compile(r"<Un\d+>")


@dataclass(frozen=True)
class InterleavedVocab:
    """Where the added tokens sit in an extended tokenizer: unit k is id `first_unit_id + k`; the markers' ids."""

    first_unit_id: int
    num_units: int
    speech_id: int
    text_id: int

    @classmethod
    def of(cls, tokenizer, num_units: int) -> InterleavedVocab:
        """The ids of an extended tokenizer (one `extend_tokenizer` made, or its saved copy). Raises ConfigError
        when a unit or marker token is missing, the units' ids are not consecutive, or it has more units."""
        vocab = tokenizer.get_vocab()
        names = [unit_token(k) for k in range(num_units)] + [SPEECH_MARKER, TEXT_MARKER]
        missing = [name for name in names if name not in vocab]
        if missing and missing[0] != unit_token(0) and set(missing).isdisjoint({SPEECH_MARKER, TEXT_MARKER}):
            have = next(k for k in range(num_units) if unit_token(k) not in vocab)
            raise ConfigError(
                f"the tokenizer has {have} unit tokens, not num_units ({num_units}); set num_units to match"
            )
        if missing:
            raise ConfigError(
                f"the tokenizer lacks {len(missing)} of the interleaved tokens (first: {missing[0]}); extend it with "
                "slam_recipes.modeling.interleaved.extend_tokenizer"
            )
        first = vocab[unit_token(0)]
        if [vocab[unit_token(k)] for k in range(num_units)] != list(range(first, first + num_units)):
            raise ConfigError(f"the tokenizer's {num_units} unit tokens do not have consecutive ids")
        if unit_token(num_units) in vocab:
            raise ConfigError(
                f"the tokenizer has more unit tokens than num_units ({num_units}); set num_units to match"
            )
        return cls(first, num_units, vocab[SPEECH_MARKER], vocab[TEXT_MARKER])

    def unit_ids(self, units: np.ndarray) -> np.ndarray:
        """Unit indices (k in [0, num_units)) → token ids."""
        return np.asarray(units, dtype=np.int64) + self.first_unit_id


def extend_tokenizer(tokenizer, num_units: int) -> InterleavedVocab:
    """Add `<Un0>`…`<Un{num_units-1}>`, `<speech>` and `<text>` to a text tokenizer, in place, as tokens matched
    before its own splitting (added, not special, not normalised), with consecutive ids after its own. Raises
    ConfigError when it already has unit or marker tokens (the vocabulary would be ambiguous)."""
    from tokenizers import AddedToken

    if num_units < 1:
        raise ConfigError(f"num_units must be positive, got {num_units}")
    present = sorted(t for t in tokenizer.get_vocab() if _UNIT_TOKEN.fullmatch(t) or t in (SPEECH_MARKER, TEXT_MARKER))
    if present:
        raise ConfigError(
            f"{getattr(tokenizer, 'name_or_path', '') or 'the text tokenizer'}: already has unit or marker tokens "
            f"({', '.join(present[:3])}{', ...' if len(present) > 3 else ''}); start from the text LM's own tokenizer"
        )
    names = [unit_token(k) for k in range(num_units)] + [SPEECH_MARKER, TEXT_MARKER]
    tokenizer.add_tokens([AddedToken(name, special=False, normalized=False) for name in names])
    return InterleavedVocab.of(tokenizer, num_units)


def extend_text_lm(model, tokenizer, num_units: int) -> InterleavedVocab:
    """Extend a causal text LM and its tokenizer, in place, for interleaved training: the tokenizer gains the unit
    and marker tokens (`extend_tokenizer`), and the model's embeddings grow to the tokenizer's length with
    `mean_resizing`. A matrix that had rows beyond the tokenizer (Qwen2.5 pads 151,665 tokens to 151,936 rows) is
    first cut to the tokenizer's length, so every added token gets a mean-resized row rather than an untrained
    padding row. Seed torch first for reproducible rows."""
    real = len(tokenizer)
    if model.get_input_embeddings().num_embeddings > real:
        model.resize_token_embeddings(real, mean_resizing=False)
    vocab = extend_tokenizer(tokenizer, num_units)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return vocab


def build_interleaved_lm(model_name_or_path: str, num_units: int = 500, pretrained: bool = True, **loading):
    """(model, tokenizer, vocab) for interleaved training from a causal text LM (Hub name or folder) and its own
    tokenizer: extended here (`extend_text_lm`), or read back when the folder is already an interleaved checkpoint
    (it has every unit and marker token), to train on. `pretrained=False` builds the architecture from its config
    alone, sized to the tokenizer, with random weights (a folder holding only config.json and the tokenizer, as the
    CPU demo's), then extends it. `loading` reaches `from_pretrained` / `from_config` (`dtype`,
    `attn_implementation`, `revision`); None values are left out."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from slam_recipes.modeling.unit_lm import model_load_error, register_attention

    loading = {k: v for k, v in loading.items() if v is not None}
    register_attention(loading.get("attn_implementation"))
    try:  # no such folder or Hub model, offline without a cached copy, no weights: one line naming the model
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, revision=loading.get("revision"))
        if pretrained:
            model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **loading)
        else:
            config = AutoConfig.from_pretrained(model_name_or_path, revision=loading.pop("revision", None))
    except (OSError, ValueError) as err:
        raise model_load_error(model_name_or_path, err) from err
    if not pretrained:
        config.vocab_size = len(tokenizer)
        if loading.get("dtype") == "auto":
            loading.pop("dtype")
        model = AutoModelForCausalLM.from_config(config, **loading)
    vocab = checkpoint_vocab(tokenizer, num_units, model_name_or_path)  # an interleaved checkpoint: trained on
    if vocab is None:
        vocab = extend_text_lm(model, tokenizer, num_units)
    return model, tokenizer, vocab


def checkpoint_vocab(tokenizer, num_units: int, model_name_or_path: str) -> InterleavedVocab | None:
    """The `InterleavedVocab` of a tokenizer that has the modality markers (an interleaved checkpoint's), None for
    one without them. Raises a ConfigError naming the model when its unit tokens are not `num_units`."""
    if not {SPEECH_MARKER, TEXT_MARKER} <= set(tokenizer.get_vocab()):
        return None
    try:
        return InterleavedVocab.of(tokenizer, num_units)
    except ConfigError as err:  # e.g. its 500 units against num_units 200
        raise ConfigError(f"{model_name_or_path}: {err}") from err


def load_interleaved_tokenizer(model_name_or_path: str, num_units: int, revision: str | None = None):
    """(tokenizer, vocab) of an interleaved checkpoint, or None when the model's tokenizer has no modality markers
    (a TWIST unit LM, a plain text LM) or it has no tokenizer. Raises ConfigError when the model itself cannot be
    found, and when the tokenizer has the markers but not `num_units` units (`InterleavedVocab.of`)."""
    from transformers import AutoConfig, AutoTokenizer

    from slam_recipes.modeling.unit_lm import model_load_error

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, revision=revision)
    except (OSError, ValueError):
        try:
            AutoConfig.from_pretrained(model_name_or_path, revision=revision)
        except (OSError, ValueError) as err:
            raise model_load_error(model_name_or_path, err) from err
        return None  # a model without a tokenizer: not an interleaved checkpoint
    vocab = checkpoint_vocab(tokenizer, num_units, model_name_or_path)
    return None if vocab is None else (tokenizer, vocab)


def load_model_vocabulary(model_name_or_path: str, num_units: int, revision: str | None = None):
    """What evaluation starts from, checked before any data or weights are read: (tokenizer, vocab)
    of an interleaved checkpoint (`load_interleaved_tokenizer`), or None for a speech LM over the unit vocabulary,
    whose size is then checked against `num_units` (`unit_lm.check_unit_lm`), so that a `num_units` the model does not
    have is reported against the model rather than against a data row."""
    from slam_recipes.modeling.unit_lm import check_unit_lm

    interleaved = load_interleaved_tokenizer(model_name_or_path, num_units, revision)
    if interleaved is None:
        check_unit_lm(model_name_or_path, num_units, revision)
    return interleaved


def check_interleaved_lm(model, tokenizer, where: str) -> None:
    """A ConfigError when the model's embedding matrix has fewer rows than its extended tokenizer has tokens."""
    rows = model.get_input_embeddings().num_embeddings
    if rows < len(tokenizer):
        raise ConfigError(f"{where}: the model has {rows} embedding rows for the tokenizer's {len(tokenizer)} tokens")


def require_interleaved(interleaved, model_name_or_path: str, num_units: int, option: str) -> None:
    """A ConfigError naming `option` when `interleaved` (what `load_interleaved_tokenizer` returned) is None."""
    if interleaved is None:
        raise ConfigError(
            f"{model_name_or_path}: {option} needs an interleaved model, whose tokenizer has the {num_units} unit "
            "tokens and <speech> / <text>"
        )


def load_inference_lm(model_name_or_path: str, num_units: int, interleaved, **loading):
    """The model to score or generate with: a speech LM over the unit vocabulary (`unit_lm.load_speech_lm`), or,
    when `interleaved` is (tokenizer, vocab) from `load_interleaved_tokenizer`, the interleaved model, checked to
    have a row for every token of its tokenizer. `loading` as for `unit_lm.load_causal_lm`."""
    from slam_recipes.modeling.unit_lm import load_causal_lm, load_speech_lm

    if interleaved is None:
        return load_speech_lm(model_name_or_path, num_units, **loading)
    model = load_causal_lm(model_name_or_path, **loading)
    check_interleaved_lm(model, interleaved[0], model_name_or_path)
    return model
