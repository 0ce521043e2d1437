"""The unit vocabulary: PAD = 0, `<S>` = 1 (BOS and EOS), unit k = id k + 2, text form `<Un17>`, and the one
framing of an utterance, `<S> units <S>` (`frame_units`).

The layout matches slamkit and the released slprl/slam checkpoints, so their tokens and ours are interchangeable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from slam_recipes.errors import DataError

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<S>"
EOS_TOKEN = "<S>"
PAD_ID = 0
BOS_ID = 1
EOS_ID = 1
NUM_SPECIAL = 2
DEFAULT_NUM_UNITS = 500
# Interleaved speech-text models (SIMS, Maimon et al. 2025; slamkit's interleaving tokeniser): a text LM's vocabulary
# plus the `<Un…>` units and these two markers, each opening a span of its modality.
SPEECH_MARKER = "<speech>"
TEXT_MARKER = "<text>"

_UNIT_RE = re.compile(r"<Un(\d+)>")
_UNIT_STRING_RE = re.compile(r"(?:\s*<Un\d+>)*\s*")
_LONG_ID_RE = re.compile(r"<Un(\d{10,})>")


def unit_token(unit: int) -> str:
    """The text form of unit `unit`, e.g. `<Un17>`."""
    return f"<Un{unit}>"


def vocab_size(num_units: int) -> int:
    return num_units + NUM_SPECIAL


def build_unit_tokenizer(num_units: int = DEFAULT_NUM_UNITS):
    """A standard fast tokenizer over `<pad>`, `<S>` and `<Un0>`..`<Un{num_units-1}>`.

    Every symbol is also registered as an added token. Added tokens are matched before any pre-tokenizer runs, so
    the folder still tokenizes correctly when `AutoTokenizer` picks the base LM's tokenizer class from `config.json`
    (transformers forces `Qwen2Tokenizer` for `model_type: qwen2`, whose byte-level splitter would otherwise turn
    `<Un17>` into nothing).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if num_units < 1:
        raise ValueError(f"num_units must be positive, got {num_units}")
    vocab = {PAD_TOKEN: PAD_ID, BOS_TOKEN: BOS_ID}
    vocab.update({unit_token(k): k + NUM_SPECIAL for k in range(num_units)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (PAD_TOKEN, BOS_TOKEN)])
    backend.add_tokens([AddedToken(unit_token(k), special=False, normalized=False) for k in range(num_units)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tokenizer.init_kwargs["num_units"] = num_units
    # Saved as `unk_token: null`, so no base-LM default (Qwen2's `<|endoftext|>`) becomes a 503rd token on load.
    tokenizer.init_kwargs["unk_token"] = None
    return tokenizer


def frame_units(units: np.ndarray, offsets: np.ndarray, dtype=np.uint16) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows → token-id rows `<S> u+2 … <S>`: the one framing of an utterance, for training and scoring alike.

    `units`: unit indices, flat, already validated to lie in [0, num_units) (uint16 holds ids below 65,536); row i is
    `units[offsets[i]:offsets[i+1]]`, `offsets` running from 0 to `len(units)`. Returns (flat token ids of `dtype`,
    their row offsets: every row 2 longer). As slamkit's `UnitTokeniser` (`TemplateProcessing(single="<S> $0 <S>")`,
    slamkit/tokeniser/unit_tokeniser.py:43). Rows longer than the context are cut afterwards (`data.normalize_batch`).
    """
    lengths = np.diff(offsets)
    tokens = units.astype(dtype)  # a copy: the caller's units stay unit indices
    tokens += NUM_SPECIAL
    # One `np.insert` of a BOS before and an EOS after every row.
    where = np.empty(2 * lengths.size, dtype=np.int64)
    where[0::2], where[1::2] = offsets[:-1], offsets[1:]
    ids = np.insert(tokens, where, np.tile(np.array([BOS_ID, EOS_ID], dtype=dtype), lengths.size))
    return ids, np.concatenate([[0], np.cumsum(lengths + 2)])


def parse_unit_string(text: str, where: str = "") -> list[int]:
    """`"<Un3><Un49>"` → `[3, 49]` (unit indices, not token ids). Anything but unit tokens and whitespace is an error."""
    if not _UNIT_STRING_RE.fullmatch(text):
        bad = _UNIT_RE.sub("", text).strip()[:20]
        raise DataError(f"{where}: unit string holds something other than <UnK> tokens: {bad!r}")
    return [int(m) for m in _UNIT_RE.findall(text)]


def parse_unit_strings(strings, where) -> tuple[np.ndarray, np.ndarray]:
    """A column of unit strings (a pyarrow string array without nulls) → (unit indices, row offsets), the same as
    `parse_unit_string` on every row, in Arrow's compute kernels rather than a Python loop over rows (slamkit's
    tokens JSONL: 7.7M–8.8M units/s on a 2-core AVX2 EPYC, against 1.2M for the per-row loop).
    `where(i)` names row i in errors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = pc.match_substring_regex(strings, r"^(?:\s*<Un\d{1,9}>)*\s*$")  # 9 digits: beyond any vocabulary
    if not pc.all(valid).as_py():
        bad = int(np.flatnonzero(~valid.to_numpy(zero_copy_only=False))[0])
        text = strings[bad].as_py()
        parse_unit_string(text, where(bad))  # raises, naming the row and what it holds
        raise DataError(f"{where(bad)}: unit id {_LONG_ID_RE.search(text).group(1)} is outside any unit vocabulary")
    if pc.any(pc.match_substring_regex(strings, r"\s")).as_py():
        strings = pc.replace_substring_regex(strings, r"\s+", "")
    # "<Un3><Un49>" → "3>49>" → ["3", "49", ""]: one piece per unit, and an empty one closing each row.
    pieces = pc.split_pattern(pc.replace_substring(strings, "<Un", ""), ">")
    counts = pc.list_value_length(pieces).to_numpy(zero_copy_only=False).astype(np.int64) - 1
    flat = pc.list_flatten(pieces)
    values = pc.cast(flat.filter(pc.greater(pc.binary_length(flat), 0)), pa.int64()).to_numpy(zero_copy_only=False)
    return values, np.concatenate([[0], np.cumsum(counts)])


@functools.lru_cache(maxsize=8)
def _unit_token_table(size: int) -> np.ndarray:
    return np.array([unit_token(k) for k in range(size)], dtype=object)


def units_to_string(units: Sequence[int]) -> str:
    """`[3, 49]` → `"<Un3><Un49>"` (a lookup table, so converting millions of units stays fast)."""
    units = np.asarray(units, dtype=np.int64)
    if units.size == 0:
        return ""
    if units.min() < 0:
        raise ValueError(f"unit ids must be non-negative, got {int(units.min())}")
    return "".join(_unit_token_table(max(512, int(units.max()) + 1))[units])
