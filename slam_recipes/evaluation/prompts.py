"""Generation prompts: the first seconds of each sample of a unit dataset or an audio folder, cut at a unit
boundary, as `<S> units` (BOS, no EOS), with names unique across sources."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from slam_recipes.audio.features import SAMPLE_RATE, read_audio
from slam_recipes.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


@dataclass
class Prompt:
    id: str
    units: np.ndarray  # unit indices (not token ids), already cut to the prompt length
    text: str | None = None  # a transcript of the source, when the dataset has one
    audio_path: str | None = None  # the source audio file, when the prompt came from audio
    source_id: str | None = None  # the dataset's own id of the row, when `id` (a file name) differs from it


def cut_units(units: np.ndarray, durations: np.ndarray | None, max_frames: int) -> np.ndarray:
    """The prompt units heard in the first `max_frames` feature frames (paper: 3 s × 25 Hz = 75 frames).

    `units`: (L,) unit indices of one utterance, deduplicated when `durations` is given; `durations`: (L,) frames
    each unit's run lasts, or None. Returns a prefix of `units`, never empty.

    With durations, a unit is kept when its run starts before frame `max_frames`, so the unit whose run straddles
    the cut is kept. This is what the paper's code gives: slamkit cuts the prompt audio at 3 s and only then
    tokenises it (`PromptDataset.__getitem__`, slamkit/metric/generative_metric.py:65-66), so the part of the
    straddling run inside the 3 s still yields that unit, and the dedup that follows keeps one copy of it. (The
    feature frames next to the cut see less right context there and may be assigned other units; that edge effect
    is not modelled.) Example: durations [50, 30, 10], 75 frames: the runs start at frames 0, 50 and 80 → the first
    two units; dropping the straddler would cut the prompt to 2 s.

    Without durations the first `max_frames` units are kept (deduplicated units then cover at least that much
    audio).
    """
    if durations is None:
        return units[: max(1, max_frames)]
    durations = np.asarray(durations)
    starts = np.cumsum(durations) - durations
    keep = int(np.searchsorted(starts, max_frames, side="left"))  # runs starting before the cut
    return units[: max(1, keep)]


def load_prompts(
    source: str,
    *,
    num_units: int,
    split: str = "train",
    column: str | None = None,
    num_prompts: int | None = None,
    prompt_seconds: float | None = 3.0,
    frame_rate: float = 25.0,
    tokenizer=None,
) -> tuple[list[Prompt], dict]:
    """Prompts from audio (a folder/glob of audio files or an HF dataset with an audio column), from a units
    dataset (`units`, `audio_repr`, or a pair dataset's `positive` column, e.g. the correct sStoryCloze samples),
    or, when `column` names a text column, from text (for interleaved models); the first `num_prompts` of them,
    units cut to `prompt_seconds`. Returns the prompts and a summary of how they were
    made (kind, cut, resampled files). `tokenizer` is called only for audio prompts and returns `(extractor,
    assigner, dedup)`."""
    from slam_recipes.audio.tokenizer import is_audio_files, open_audio_source

    if is_audio_files(source):
        rows = open_audio_source(source)[0][:num_prompts]
        prompts, summary = _audio_prompts(rows, "audio", None, source, prompt_seconds, tokenizer, num_units)
        return make_ids_unique(prompts), summary

    from datasets import Audio

    from slam_recipes.data.sources import detect_units_column, load_source

    datasets = load_source(source, split=split)
    label, dataset = datasets[0]
    if column is None and "positive" in dataset.column_names:
        column = "positive"
    if column is None:
        audio = [c for c, f in dataset.features.items() if isinstance(f, Audio)]
        column = audio[0] if audio else None
    if column is not None and isinstance(dataset.features.get(column), Audio):
        rows = []
        for _, part in datasets:
            part = part.cast_column(column, Audio(decode=False))
            limit = len(part) if num_prompts is None else min(len(part), num_prompts - len(rows))
            rows += list(part.select(range(limit)))
            if num_prompts is not None and len(rows) >= num_prompts:
                break
        prompts, summary = _audio_prompts(rows, column, "text", source, prompt_seconds, tokenizer, num_units)
        return make_ids_unique(prompts), summary
    if column is not None and _is_text_column(dataset, column):
        summary = {"kind": "text", "column": column, "cut": "none", "resampled": 0}
        return make_ids_unique(_text_prompts(datasets, column, num_prompts)), summary
    column = detect_units_column(dataset, label, column)
    prompts, summary = _unit_prompts(datasets, column, num_units, num_prompts, prompt_seconds, frame_rate)
    return make_ids_unique(prompts), summary


def _is_text_column(dataset, column: str) -> bool:
    """A plain string column that is not one of unit strings (`audio_repr`): text prompts, for interleaved models."""
    from datasets import Value

    from slam_recipes.data.sources import UNITS_COLUMNS

    feature = dataset.features.get(column)
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string") and column not in UNITS_COLUMNS


def _text_prompts(datasets, column: str, num_prompts: int | None) -> list[Prompt]:
    """Text prompts (an interleaved model continues them): `Prompt.text` from `column`, no units. An empty text is a
    DataError naming the row."""
    prompts: list[Prompt] = []
    for label, dataset in datasets:
        if num_prompts is not None:
            dataset = dataset.select(range(min(len(dataset), num_prompts - len(prompts))))
        table = dataset.with_format("arrow")[:]
        names, sources = _row_names(table, label)
        for i, text in enumerate(table.column(column).to_pylist()):
            if not (text or "").strip():
                raise DataError(f"{label} row {i}: empty text in column {column!r}")
            prompts.append(Prompt(id=names[i], units=np.zeros(0, dtype=np.int64), text=text, source_id=sources[i]))
        if num_prompts is not None and len(prompts) >= num_prompts:
            break
    return prompts


def make_ids_unique(prompts: list[Prompt]) -> list[Prompt]:
    """File names are built from ids: a repeated id gets `-2`, `-3`, ... appended. A `source_id` equal to the final
    id is dropped (it says nothing more)."""
    seen: dict[str, int] = {}
    for prompt in prompts:
        count = seen.get(prompt.id, 0) + 1
        seen[prompt.id] = count
        if count > 1:
            prompt.id = f"{prompt.id}-{count}"
        if prompt.source_id == prompt.id:
            prompt.source_id = None
    return prompts


def build_prompt_tokenizer(args, device: str):
    """A factory of the `(extractor, assigner, dedup)` that turns prompt audio into units (`load_prompts`)."""

    def factory():
        from slam_recipes.audio.tokenizer import build_audio_tokenizer

        if not args.kmeans_path:
            raise ConfigError("audio prompts need kmeans_path (the centroids the model's units came from)")
        return (*build_audio_tokenizer(args, device), args.dedup)

    return factory


def prompts_from_args(args, device: str) -> tuple[list[Prompt], dict]:
    """`load_prompts` with a recipe's GenerationArguments (+ num_units); audio is tokenised on `device`."""
    return load_prompts(
        args.prompts,
        num_units=args.num_units,
        split=args.prompts_split,
        column=args.prompts_column,
        num_prompts=args.num_prompts,
        prompt_seconds=args.prompt_seconds,
        frame_rate=args.frame_rate,
        tokenizer=build_prompt_tokenizer(args, device),
    )


def _unit_prompts(datasets, column, num_units, num_prompts, prompt_seconds, frame_rate) -> tuple[list[Prompt], dict]:
    from slam_recipes.data.sources import read_units

    durations_column = {"units": "duration", "audio_repr": None}.get(column, f"{column}_duration")
    prompts: list[Prompt] = []
    used_durations = False
    for label, dataset in datasets:
        if num_prompts is not None:
            dataset = dataset.select(range(min(len(dataset), num_prompts - len(prompts))))
        table = dataset.with_format("arrow")[:]
        values, offsets = read_units(
            table.column(column), num_units=num_units, label=f"{label} column {column!r}", first_row=0
        )
        has_durations = durations_column in dataset.column_names
        durations = table.column(durations_column).to_pylist() if has_durations else None
        used_durations |= has_durations
        names, sources = _row_names(table, label)
        texts = _row_texts(table, column)
        for i in range(len(offsets) - 1):
            units = values[offsets[i] : offsets[i + 1]]
            if prompt_seconds:
                runs = np.asarray(durations[i]) if durations is not None else None
                units = cut_units(units, runs, round(prompt_seconds * frame_rate))
            prompts.append(Prompt(id=names[i], units=units, text=texts[i] if texts else None, source_id=sources[i]))
        if num_prompts is not None and len(prompts) >= num_prompts:
            break
    if not prompts:
        raise DataError(f"{datasets[0][0]}: no prompts")
    cut = "none" if not prompt_seconds else ("by run lengths" if used_durations else "first units (no durations)")
    return prompts, {"kind": "units", "column": column, "cut": cut, "resampled": 0}


def _row_names(table, label: str) -> tuple[list[str], list[str | None]]:
    """(file-safe names, the rows' own ids): names from the first of the `id`, `file`, `name` columns whose values
    are unique, else `<source>-NNNNN`; own ids from the first of those columns there is (None without one)."""
    present = [name for name in ("id", "file", "name") if name in table.column_names]
    own = [str(v) for v in table.column(present[0]).to_pylist()] if present else [None] * table.num_rows
    for name in present:
        values = [str(v) for v in table.column(name).to_pylist()]
        if len(set(values)) == len(values):
            return [_safe_name(v) for v in values], own
    stem = _safe_name(os.path.basename(label.split(" [")[0]) or "prompt")
    return [f"{stem}-{i:05d}" for i in range(table.num_rows)], own


def _row_texts(table, column: str) -> list[str] | None:
    for name in (f"{column}_text", "text", "transcript"):
        if name in table.column_names:
            return [str(v) if v is not None else None for v in table.column(name).to_pylist()]
    return None


def _safe_name(text: str) -> str:
    stem = os.path.splitext(text)[0]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "prompt"


def _audio_prompts(rows, column, text_column, source, prompt_seconds, tokenizer, num_units) -> tuple[list, dict]:
    from slam_recipes.audio.tokenizer import to_units

    if tokenizer is None:
        raise ConfigError(
            f"{source}: audio prompts need a unit tokeniser: set kmeans_path (and backend/feature_model)"
        )
    extractor, assigner, dedup = tokenizer()
    if assigner.num_units != num_units:
        raise ConfigError(f"k-means has {assigner.num_units} centroids but the model has {num_units} units")
    if not rows:
        raise DataError(f"{source}: no prompt audio")
    prompts, resampled = [], 0
    for row in rows:
        value = row[column]
        name = row.get("file") or (value.get("path") if isinstance(value, dict) else None) or f"prompt-{len(prompts)}"
        wave, rate = read_audio(value)  # unreadable or empty audio: a DataError naming the file
        resampled += rate != SAMPLE_RATE
        if prompt_seconds:
            wave = wave[: int(prompt_seconds * SAMPLE_RATE)]
        frames = extractor([wave])[0]
        if frames.shape[0] == 0:
            raise DataError(f"{name}: audio too short for one feature frame")
        units, _ = to_units(frames, assigner, dedup)
        path = value if isinstance(value, str) else None
        text = row.get(text_column) if text_column else None
        prompts.append(Prompt(id=_safe_name(str(name)), units=units.astype(np.int64), text=text, audio_path=path))
    if resampled:
        logger.warning("%d prompt file(s) were not 16 kHz and were resampled to 16 kHz", resampled)
    summary = {"kind": "audio", "column": column, "cut": f"first {prompt_seconds} s of audio", "resampled": resampled}
    return prompts, summary
