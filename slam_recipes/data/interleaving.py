"""Speech–text interleaving for SIMS-style training (Maimon, Hassid, Roth, Adi 2025, arXiv 2504.02398; slamkit's
`InterleavingTokeniser`, method `poisson`, configured in `config/tokeniser/interleaved_hubert_25.yaml`).

An utterance with a word alignment (`aligned_text`, [{word, start_time, end_time}] in seconds: the sTinyStories
layout) and its units with their run lengths (`duration`, frames of `frame_seconds`) becomes one token sequence:
spans of words chosen to be spoken become the units heard during them, the other words stay text, and each span
opens with its modality's marker:

    <speech><Un12><Un7>…<text>the cat sat<speech><Un3>…

Spans are chosen per utterance (`choose_speech_words`): Poisson lengths with mean 10 words until 30 % of the words
are covered (slamkit's `interleave_span: 10`, `interleave_prob: 0.3`). Unlike slamkit, whose text runs are the
words joined with nothing between them, a text run here is its words joined by spaces. The choice is seeded by
(seed, row index), so a dataset is interleaved the same way whatever the batching or the number of processes.

Interleaving is done in data preparation (`interleave_dataset`, one `datasets.map`), not on the fly: the training
loop then reads token ids exactly as for speech-only data, and the map is cached and shared across processes. The
cost is that every epoch sees the same interleaving.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

import numpy as np

from slam_recipes.errors import DataError

logger = logging.getLogger(__name__)

PAPER_MEAN_SPAN = 10.0  # words per speech span, Poisson λ (slamkit interleaved_hubert_25.yaml: interleave_span)
PAPER_SPEECH_FRACTION = 0.3  # share of words spoken (slamkit interleaved_hubert_25.yaml: interleave_prob)


def choose_speech_words(
    num_words: int,
    rng: np.random.Generator,
    mean_span: float = PAPER_MEAN_SPAN,
    fraction: float = PAPER_SPEECH_FRACTION,
) -> np.ndarray:
    """Which words are spoken: a boolean mask over `num_words` words. Spans start at a word drawn uniformly among
    those neither in a span nor right after one, with a Poisson(`mean_span`) length (cut at the end; a draw that would
    overlap a span is dropped and drawn again), until at least ceil(`fraction` · num_words) words are spoken or no
    start is left."""
    if not 0 <= fraction <= 1 or mean_span <= 0:
        raise ValueError(f"fraction must be in [0, 1] and mean_span positive, got {fraction}, {mean_span}")
    spoken = np.zeros(num_words, dtype=bool)
    free = np.ones(num_words, dtype=bool)  # where a span may start
    target = math.ceil(num_words * fraction)
    while spoken.sum() < target and free.any():
        start = int(rng.choice(np.flatnonzero(free)))
        stop = min(start + int(rng.poisson(mean_span)), num_words)
        if stop == start or spoken[start:stop].any():
            continue
        spoken[start:stop] = True
        free[start : stop + 1] = False
    return spoken


def chunks(ids: list[int], context_length: int | None) -> list[list[int]]:
    """`ids` cut into rows of at most `context_length` tokens (None: one row)."""
    if not context_length or len(ids) <= context_length:
        return [ids]
    return [ids[i : i + context_length] for i in range(0, len(ids), context_length)]


def check_alignment(words: Sequence[dict], audio_seconds: float, frame_seconds: float, where: str) -> None:
    """A word alignment fits its audio: every word has 0 ≤ start ≤ end ≤ the audio's length (with one frame of
    slack), in time order. Raises DataError naming `where` and the word otherwise."""
    previous = 0.0
    for i, word in enumerate(words):
        start, end = word["start_time"], word["end_time"]
        if not 0 <= start <= end <= audio_seconds + frame_seconds or start < previous - frame_seconds:
            raise DataError(
                f"{where}: word {i} {word['word']!r} at {start:.3f}-{end:.3f} s is outside the audio's "
                f"0-{audio_seconds:.3f} s or out of order"
            )
        previous = start


def interleave(
    units: Sequence[int],
    durations: Sequence[int],
    words: Sequence[dict],
    spoken: np.ndarray,
    *,
    frame_seconds: float,
    unit_ids: Callable[[np.ndarray], np.ndarray],
    speech_id: int,
    text_id: int,
    encode_text: Callable[[str], list[int]],
    where: str = "row",
) -> list[int]:
    """Token ids of one interleaved utterance (no BOS / EOS). `units` / `durations`: the utterance's units and run
    lengths in frames of `frame_seconds` (1 / 25 for mHuBERT-25Hz); `words`: its alignment; `spoken`: which words
    are spoken (`choose_speech_words`). A run of spoken words becomes the units that overlap it in time; a run of
    text words, `encode_text` of the words joined by spaces. Each run opens with `speech_id` or `text_id`. Raises
    DataError naming `where` when the alignment does not fit the audio or a spoken run has no unit."""
    durations = np.asarray(durations, dtype=np.int64)
    if len(durations) != len(units):
        raise DataError(f"{where}: {len(units)} units but {len(durations)} durations")
    ends = np.cumsum(durations)  # in frames: unit k covers frames [ends[k] - durations[k], ends[k])
    starts = ends - durations
    check_alignment(words, float(ends[-1]) * frame_seconds if len(ends) else 0.0, frame_seconds, where)
    ids: list[int] = []
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and spoken[j] == spoken[i]:
            j += 1
        if spoken[i]:
            begin, end = words[i]["start_time"], words[j - 1]["end_time"]
            # Units overlapping [begin, end), in frames rounded to 1e-6 so that 0.12 s at 25 Hz is frame 3, not 2.99…
            frame_begin, frame_end = round(begin / frame_seconds, 6), round(end / frame_seconds, 6)
            first, last = bisect_right(ends, frame_begin), bisect_left(starts, frame_end)
            if last <= first:
                raise DataError(
                    f"{where}: words {i}-{j - 1} ({' '.join(w['word'] for w in words[i:j])!r}, {begin:.3f}-{end:.3f} "
                    "s) have no units"
                )
            ids.append(speech_id)
            ids += unit_ids(np.asarray(units[first:last])).tolist()
        else:
            ids.append(text_id)
            ids += encode_text(" ".join(w["word"] for w in words[i:j]))
        i = j
    return ids


def checked_units(units, num_units: int, where: str) -> np.ndarray:
    """A row's units as an int64 array. Raises DataError naming `where` for an empty (or null) row and for an id
    outside [0, num_units), which would otherwise become a marker token or index past the embeddings."""
    values = np.asarray(units if units is not None else [], dtype=np.int64)
    if values.size == 0:
        raise DataError(f"{where}: empty unit sequence")
    bad = np.flatnonzero((values < 0) | (values >= num_units))
    if bad.size:
        raise DataError(f"{where}: unit id {int(values[bad[0]])} outside [0, {num_units})")
    return values


def interleave_dataset(
    dataset,
    tokenizer,
    vocab,
    *,
    frame_rate: float,
    seed: int = 0,
    mean_span: float = PAPER_MEAN_SPAN,
    fraction: float = PAPER_SPEECH_FRACTION,
    label: str = "dataset",
    num_proc: int | None = None,
    context_length: int | None = None,
):
    """A units dataset with word alignments (`units`, `duration`, `aligned_text`: `recipes/tokenize_audio.py` with
    `keep_durations` on sTinyStories) → a dataset of `input_ids`: each row interleaved (`interleave`) with its own
    generator, seeded by (`seed`, row index), and framed by the tokenizer's BOS (when it has one) and EOS. `vocab`:
    the extended tokenizer's `InterleavedVocab`; `frame_rate`: unit frames per second before dedup (25 for
    mHuBERT-25Hz). A row longer than `context_length` is cut into rows of at most that many tokens. Raises DataError
    naming the row for a missing column, an alignment that is empty or does not fit, or units out of range."""
    missing = [c for c in ("units", "duration", "aligned_text") if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{label}: interleaving needs column(s) {missing} (found {dataset.column_names}); tokenise with "
            "keep_durations true a dataset with word alignments (aligned_text), such as slprl/sTinyStories"
        )
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def encode_text(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def rows(batch, indices):
        out = []
        columns = (batch["units"], batch["duration"], batch["aligned_text"], indices)
        for units, durations, words, index in zip(*columns, strict=True):
            where = f"{label} row {index}"
            units = checked_units(units, vocab.num_units, where)
            if not words:
                raise DataError(f"{where}: no aligned words (aligned_text is {'null' if words is None else 'empty'})")
            rng = np.random.default_rng([seed, index])
            spoken = choose_speech_words(len(words), rng, mean_span, fraction)
            body = interleave(
                units,
                durations,
                words,
                spoken,
                frame_seconds=1.0 / frame_rate,
                unit_ids=vocab.unit_ids,
                speech_id=vocab.speech_id,
                text_id=vocab.text_id,
                encode_text=encode_text,
                where=where,
            )
            out += chunks(head + body + tail, context_length)
        return {"input_ids": out}

    return dataset.map(
        rows, batched=True, with_indices=True, remove_columns=dataset.column_names, num_proc=num_proc,
        desc=f"Interleaving speech and text ({label})",
    )  # fmt: skip


def speech_only_dataset(
    dataset,
    tokenizer,
    vocab,
    *,
    label: str = "dataset",
    num_proc: int | None = None,
    context_length: int | None = None,
):
    """A units dataset (`units`) → `input_ids` for an interleaved model: BOS (when the tokenizer has one), the
    units' token ids, EOS. No marker, as in slamkit: markers open the runs of interleaved rows only. Raises DataError
    naming the row for an empty row or a unit id outside [0, num_units)."""
    if "units" not in dataset.column_names:
        raise DataError(f"{label}: a speech-only source needs a `units` column (found {dataset.column_names})")
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def rows(batch, indices):
        ids = [
            head + vocab.unit_ids(checked_units(units, vocab.num_units, f"{label} row {index}")).tolist() + tail
            for units, index in zip(batch["units"], indices, strict=True)
        ]
        return {"input_ids": [chunk for row in ids for chunk in chunks(row, context_length)]}

    return dataset.map(rows, batched=True, with_indices=True, remove_columns=dataset.column_names, num_proc=num_proc,
                       desc=f"Speech-only rows ({label})")  # fmt: skip


def text_only_dataset(
    dataset,
    tokenizer,
    *,
    text_column: str = "text",
    label: str = "dataset",
    num_proc: int | None = None,
    context_length: int | None = None,
):
    """Any text dataset (its `text_column`) → `input_ids` for an interleaved model: BOS (when the tokenizer has
    one), the text's own tokens, EOS. No marker, as in slamkit (its text-only rows are raw text)."""
    if text_column not in dataset.column_names:
        raise DataError(f"{label}: a text-only source needs a {text_column!r} column (found {dataset.column_names})")
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def rows(batch):
        encoded = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
        return {"input_ids": [chunk for ids in encoded for chunk in chunks(head + ids + tail, context_length)]}

    return dataset.map(rows, batched=True, remove_columns=dataset.column_names, num_proc=num_proc,
                       desc=f"Text-only rows ({label})")  # fmt: skip


INTERLEAVED_COLUMNS = ("units", "duration", "aligned_text")


def source_kind(dataset, text_column: str = "text") -> str | None:
    """How a loaded source feeds an interleaved model, read from its columns: `interleaved` (units, their
    durations and a word alignment), `speech` (units only), `text` (a text column and no units), or None."""
    columns = set(dataset.column_names)
    if set(INTERLEAVED_COLUMNS) <= columns:
        return "interleaved"
    if "units" in columns:
        return "speech"
    return "text" if text_column in columns else None


def load_interleaved_datasets(
    sources: Sequence[str | dict],
    *,
    tokenizer,
    vocab,
    frame_rate: float,
    context_length: int,
    split: str = "train",
    own_split: bool = True,
    ratios: Sequence[float] | None = None,
    stopping_strategy: str = "first_exhausted",
    seed: int = 42,
    mean_span: float = PAPER_MEAN_SPAN,
    fraction: float = PAPER_SPEECH_FRACTION,
    text_column: str = "text",
    num_proc: int | None = None,
):
    """Every source (a path or an entry of TRL's dataset mixture, as for speech-only pretraining) → `input_ids`
    rows for an interleaved model, by its kind (`source_kind`): interleaved with `interleave_dataset`, speech-only
    or text-only rows; each cut to `context_length`; then mixed by the project's `mix` (concatenated, or sampled by
    `ratios`: slamkit's SIMS run samples text-only, interleaved and speech-only data at 0.202 / 0.543 / 0.254, so that
    their token counts match). A source of no kind is a DataError naming it and its columns."""
    from slam_recipes.data.sources import as_entry, check_ratios, load_entry, mix, split_of

    entries = [as_entry(source) for source in sources]
    names = [e["path"] if split_of(e, split, own_split) == "train" else f"{e['path']} [{split_of(e, split, own_split)}]"
             for e in entries]  # fmt: skip
    if ratios is not None:
        check_ratios(names, ratios, stopping_strategy)
    prepared = []
    for entry in entries:
        parts = []
        for label, dataset in load_entry(entry, split, own_split=own_split):
            kind = source_kind(dataset, text_column)
            partial = [c for c in INTERLEAVED_COLUMNS[1:] if c in dataset.column_names]
            if kind == "speech" and partial:  # meant to be interleaved, surely: not read as units alone in silence
                lacking = next(c for c in INTERLEAVED_COLUMNS[1:] if c not in partial)
                raise DataError(
                    f"{label}: has {partial[0]} but no {lacking} column: interleaving needs units, duration and "
                    "aligned_text (tokenise with keep_durations true); to train on its units alone, give the source "
                    "with columns: [units]"
                )
            if kind is not None:
                logger.info("%s: read as %s rows", label, kind)
            common = dict(label=label, num_proc=num_proc, context_length=context_length)
            if kind == "interleaved":
                part = interleave_dataset(
                    dataset.select_columns(list(INTERLEAVED_COLUMNS)), tokenizer, vocab, frame_rate=frame_rate,
                    seed=seed, mean_span=mean_span, fraction=fraction, **common,
                )  # fmt: skip
            elif kind == "speech":
                part = speech_only_dataset(dataset.select_columns(["units"]), tokenizer, vocab, **common)
            elif kind == "text":
                texts = dataset.select_columns([text_column])
                part = text_only_dataset(texts, tokenizer, text_column=text_column, **common)
            else:
                raise DataError(
                    f"{label}: neither units (speech), units + duration + aligned_text (interleaved) nor a "
                    f"{text_column!r} column (text); found {dataset.column_names}"
                )
            parts.append(part)
        prepared.append(mix(parts))
    return mix(prepared, ratios, seed=seed, stopping_strategy=stopping_strategy, names=names)


def build_interleaved_datasets(
    dataset_name: Sequence[str] | None = None,
    *,
    datasets: Sequence[dict] | None = None,
    tokenizer,
    vocab,
    frame_rate: float = 25.0,
    mean_span: float = PAPER_MEAN_SPAN,
    fraction: float = PAPER_SPEECH_FRACTION,
    text_column: str = "text",
    context_length: int = 2048,
    packing: str = "padding_free",
    dataset_config: str | None = None,
    dataset_split: str = "train",
    validation_split: str | None = None,
    validation_fraction: float = 0.0,
    dataset_ratios: Sequence[float] | None = None,
    mixture_stopping_strategy: str = "first_exhausted",
    preprocessing_num_workers: int | None = None,
    seed: int = 42,
):
    """(train, eval or None) packed `input_ids` datasets for an interleaved model from the recipe's sources (as for
    `build_pretraining_datasets`: `dataset_name` or TRL's mixture entries `datasets`), each read by its kind
    (`load_interleaved_datasets`), then packed to `context_length`."""
    from slam_recipes.data.sources import as_mixture, load_and_pack

    sources, ratios = as_mixture(dataset_name, datasets, dataset_config, dataset_ratios)
    common = dict(
        tokenizer=tokenizer, vocab=vocab, frame_rate=frame_rate, context_length=context_length, ratios=ratios,
        stopping_strategy=mixture_stopping_strategy, seed=seed, mean_span=mean_span, fraction=fraction,
        text_column=text_column, num_proc=preprocessing_num_workers,
    )  # fmt: skip
    return load_and_pack(
        lambda split, own_split: load_interleaved_datasets(sources, split=split, own_split=own_split, **common),
        dataset_split, validation_split, validation_fraction, seed, context_length, packing, preprocessing_num_workers,
        empty=f"{[source['path'] for source in sources]}: no training rows",
    )  # fmt: skip
