"""Audio → units: read an audio dataset or a folder of audio files, extract features, assign each frame its nearest
k-means centroid, collapse repeats, and write the units dataset shard by shard.

The output folder is a units dataset every recipe reads (`load_dataset(output_dir)`): `data/train-NNNNN.parquet`
shards holding `units` (uint16; `prompt` / `chosen` / `rejected` or `positive` / `negative` for preference and pair
datasets, one column per audio column), optional `duration` run lengths, the source `file`, and every other column
of the input (texts, ids). A recording longer than the segmenter's `max_segment_seconds` gives one row per segment
(`slam_recipes.audio.segmentation`), each with `start` / `end` seconds in its file. A shard is written under a
temporary name and renamed, then marked done in `report/shard-NNNNN.json`; a rerun skips done shards. Unreadable or
empty audio, long audio with no speech found, and audio shorter than the feature model's receptive field (400
samples, 25 ms, for HuBERT base) are skipped and listed in `tokenize_report.jsonl`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from slam_recipes.audio.features import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    AudioReader,
    find_audio_files,
    samples_before_resampling,
)
from slam_recipes.audio.segmentation import ALIGNMENT_COLUMN, Segment, Segmenter, slice_alignment
from slam_recipes.errors import ConfigError, DataError, first_line_and_cause
from slam_recipes.files import atomic_path, atomic_write, file_builder

logger = logging.getLogger(__name__)

SHARD_FILE = os.path.join("data", "train-{:05d}.parquet")
DONE_FILE = os.path.join("report", "shard-{:05d}.json")
REPORT_FILE = "tokenize_report.jsonl"
CONFIG_FILE = "tokenize_config.json"
CORPUS_MANIFEST = "corpus.json"  # a built unit corpus (the demo's): its `units` block says how the units were made


def units_column_name(audio_column: str) -> str:
    """`audio` → `units`; `<name>_audio` → `<name>` (SALMon's `positive_audio` → `positive`); other audio columns
    (`prompt`, `chosen`, `positive`, ...) keep their name."""
    if audio_column == "audio":
        return "units"
    return audio_column.removesuffix("_audio") if audio_column.endswith("_audio") else audio_column


def open_audio_source(
    source: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    streaming: bool = False,
    audio_columns: list[str] | None = None,
) -> tuple[Iterable[dict], list[str], int | None]:
    """(rows, audio columns, number of rows or None when streaming). A folder or glob of audio files gives rows
    `{"file": relative path, "audio": absolute path}`; an HF audio dataset (Hub name, `save_to_disk` folder, data
    files) gives its rows with every audio column left undecoded (bytes + path), to be read by `AudioReader`."""
    if is_audio_files(source):
        if audio_columns and list(audio_columns) != ["audio"]:
            raise ConfigError(
                f"{source}: audio files have one audio column, 'audio'; audio_columns {list(audio_columns)} names "
                "columns of an audio dataset"
            )
        root, files = find_audio_files(source)
        rows = [{"file": f, "audio": os.path.join(root, f)} for f in files]
        return rows, ["audio"], len(rows)

    from datasets import Audio, load_dataset, load_from_disk

    try:
        if os.path.isfile(os.path.join(source, "state.json")) or os.path.isfile(
            os.path.join(source, "dataset_dict.json")
        ):
            dataset = load_from_disk(source)
            dataset = dataset[split] if hasattr(dataset, "keys") else dataset
        elif os.path.isfile(source) and file_builder(source):  # one data file: its builder, as `dataset_name` does
            dataset = load_dataset(file_builder(source), data_files=source, split=split, streaming=streaming)
        else:
            dataset = load_dataset(source, config_name, split=split, streaming=streaming)
    except Exception as err:  # whatever `datasets` raises for a bad source becomes one line naming it
        raise DataError(f"{source}: cannot load split {split!r}: {first_line_and_cause(err)}") from err
    features = dataset.features or {}
    found = [name for name, feature in features.items() if isinstance(feature, Audio)]
    columns = audio_columns or found
    missing = [c for c in columns if c not in features]
    if missing or not columns:
        raise DataError(
            f"{source}: no audio column{' ' + str(missing) if missing else ''} (columns: {list(features)}); "
            "set audio_columns"
        )
    unlisted = [c for c in found if c not in columns]
    if unlisted:  # audio columns not asked for are dropped, not decoded (that needs torchcodec) nor copied along
        dataset = dataset.remove_columns(unlisted)
    for column in columns:
        if isinstance(features[column], Audio):
            dataset = dataset.cast_column(column, Audio(decode=False))
    return dataset, columns, None if streaming else len(dataset)


def sample_features(
    source: str,
    extractor,
    *,
    hours: float,
    seed: int = 0,
    split: str = "train",
    config_name: str | None = None,
    streaming: bool = False,
    audio_columns: list[str] | None = None,
    max_segment_seconds: float | None = 60.0,
) -> tuple[torch.Tensor, int]:
    """Features of a random sample of `source`'s recordings (the first ones when streaming), drawn with `seed` until
    `hours` of audio: (frames (N, dim), number of recordings), the data a k-means is fitted on. A long recording is
    read and featurised `max_segment_seconds` at a time (None: whole), so its frames at the cuts differ slightly
    from the whole file's. Unreadable files are skipped with a warning; none readable is a DataError naming the
    source."""
    rows, columns, total = open_audio_source(
        source, split=split, config_name=config_name, streaming=streaming, audio_columns=audio_columns
    )
    if total is not None:
        order = list(range(total))
        random.Random(seed).shuffle(order)
        rows = [rows[i] for i in order]
    budget, features, recordings = hours * 3600 * SAMPLE_RATE, [], 0
    for row in rows:
        if budget <= 0:
            break
        for column in columns:
            try:
                reader = AudioReader(row[column])
                piece = int(max_segment_seconds * SAMPLE_RATE) if max_segment_seconds else reader.num_samples
                frames = [extractor([reader.read(s, s + piece)])[0] for s in range(0, reader.num_samples, piece)]
            except DataError as err:
                logger.warning("skipped %s", err)
                continue
            features += frames
            recordings += 1
            budget -= reader.num_samples
    if not recordings:
        raise DataError(f"{source}: no readable audio to fit the k-means on")
    return torch.cat(features), recordings


def is_audio_files(source: str) -> bool:
    """A folder of audio files or an audio file / glob, rather than a dataset."""
    if os.path.isdir(source):
        return not _is_dataset_folder(source)
    return os.path.splitext(source)[1].lower() in AUDIO_EXTENSIONS


def build_audio_tokenizer(args, device: str, dtype: str = "auto", centroids: torch.Tensor | None = None):
    """(feature extractor, nearest-centroid assigner) from a recipe's unit tokeniser settings (backend,
    feature_model, layer, kmeans_path, allow_pickle_kmeans), checked against each other before any audio is read.
    `centroids` skips loading them again when the caller already has them."""
    from slam_recipes.audio.features import build_feature_extractor
    from slam_recipes.audio.kmeans import NearestCentroid, load_centroids

    if centroids is None:
        centroids = load_centroids(args.kmeans_path, allow_pickle=args.allow_pickle_kmeans)
    extractor = build_feature_extractor(
        args.backend,
        args.feature_model,
        args.layer,
        device=device,
        dtype=dtype,
        mfcc_frame_rate=args.mfcc_frame_rate,
        bf16_native_only=getattr(args, "bf16_native_only", True),
    )
    assigner = NearestCentroid(centroids, device)
    features = (
        f"mfcc at {args.mfcc_frame_rate} frames/s"
        if args.backend == "mfcc"
        else f"{args.backend} {args.feature_model or ''} layer {args.layer}"
    )
    assigner.check_dimension(extractor.dim, features)
    return extractor, assigner


def build_segmenter(args, extractor) -> Segmenter | None:
    """The recipe's segmentation settings (segmentation, max_segment_seconds, segment_context_seconds,
    vad_threshold) for `extractor`'s framing; None when max_segment_seconds is null (each file whole)."""
    if not args.max_segment_seconds:
        return None
    return Segmenter(
        args.segmentation,
        args.max_segment_seconds,
        hop=extractor.hop,
        window=extractor.window,
        context_seconds=args.segment_context_seconds,
        vad_threshold=args.vad_threshold,
    )


def _is_dataset_folder(path: str) -> bool:
    """A `save_to_disk` folder or a folder of data files, rather than a folder of audio files."""
    if os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(os.path.join(path, "dataset_dict.json")):
        return True
    for _, _, names in os.walk(path):
        if any(os.path.splitext(n)[1].lower() in (".parquet", ".arrow", ".jsonl") for n in names):
            return True
    return False


def shards(rows: Iterable[dict], shard_size: int) -> Iterator[tuple[int, list[dict]]]:
    batch, index = [], 0
    for row in rows:
        batch.append(row)
        if len(batch) == shard_size:
            yield index, batch
            batch, index = [], index + 1
    if batch:
        yield index, batch


def sample_budget_batches(lengths: list[int], max_samples: int) -> list[list[int]]:
    """Indices sorted by decreasing length, grouped so each batch holds at most `max_samples` audio samples in all
    (a longer waveform gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current, total = [], [], 0
    for i in order:
        if current and total + lengths[i] > max_samples:
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        batches.append(current)
    return batches


def to_units(features: torch.Tensor, assigner, dedup: bool) -> tuple[np.ndarray, np.ndarray]:
    """Frames → (units, run lengths): nearest centroids, consecutive repeats collapsed when `dedup`."""
    units = assigner(features)
    if dedup:
        units, counts = torch.unique_consecutive(units, return_counts=True)
    else:
        counts = torch.ones_like(units)
    return units.cpu().numpy().astype(np.uint16), counts.cpu().numpy().astype(np.uint32)  # a run can pass 65,535


def tokenize_rows(
    rows: list[dict],
    audio_columns: list[str],
    extractor,
    assigner,
    *,
    dedup: bool = True,
    keep_durations: bool = False,
    max_batch_samples: int = 1_600_000,
    segmenter: Segmenter | None = None,
    progress=None,
) -> tuple[list[dict], list[dict], float]:
    """Tokenise one shard: (output rows, skipped rows with the reason, seconds of audio). A row is skipped when any
    of its audio cannot be read, is empty, or is too short for one feature frame (see `too_short`); the others are
    tokenised as if it were not there, whatever the batching.

    With a `segmenter` (one audio column only), each recording is cut by it and gives one output row per segment,
    with `start` / `end` (seconds in the file) beside its units; a recording in which it finds no speech is skipped
    and reported. A cut row's word alignment (`aligned_text`, sTinyStories') keeps the words of its segment, timed
    from the segment's start, and its `text` becomes those words. Audio is read a feature batch at a time (at most
    `max_batch_samples` 16 kHz samples, or one longer segment), so memory holds one batch, not the shard."""
    if segmenter is not None and len(audio_columns) != 1:
        raise ConfigError(f"segmentation needs one audio column, got {audio_columns}: a row holds aligned audio")
    kept, skipped, spans = [], [], []  # spans: (row, column, Segment) of the kept rows
    words: dict[int, list] = {}  # span → its segment's word alignment, for cut rows that have one
    for row in rows:
        try:
            readers = {c: AudioReader(row[c]) for c in audio_columns}
        except DataError as err:
            skipped.append({"file": _row_file(row, audio_columns), "error": str(err)})
            continue
        short = (
            too_short(_row_file(row, [c]), c, reader.num_samples, reader.rate, extractor.min_samples)
            for c, reader in readers.items()
        )
        entry = next(filter(None, short), None)
        if entry is None and segmenter is not None:
            try:
                segments = segmenter(readers[audio_columns[0]])
            except DataError as err:
                segments, entry = [], {"file": _row_file(row, audio_columns), "error": str(err)}
            if not segments and entry is None:
                file = _row_file(row, audio_columns)
                entry = {"file": file, "error": f"{file}: no speech found by the voice-activity detector"}
        else:
            segments = [Segment(0, r.num_samples, 0.0, r.num_samples / SAMPLE_RATE) for r in readers.values()]
        length = readers[audio_columns[0]].num_samples
        uncut = [Segment(0, length, 0.0, length / SAMPLE_RATE)]  # what a segmenter gives a file it does not cut
        if (
            entry is None
            and segmenter is not None
            and segments != uncut
            and isinstance(row.get(ALIGNMENT_COLUMN), list)
        ):
            file = _row_file(row, audio_columns)
            try:  # each segment keeps its own words, timed from its start; a bad alignment skips the row
                where = f"{file} {ALIGNMENT_COLUMN}"
                alignments = [slice_alignment(row[ALIGNMENT_COLUMN], s.begin, s.end, where) for s in segments]
            except DataError as err:
                entry = {"file": file, "error": str(err)}
            else:
                words.update({len(spans) + k: a for k, a in enumerate(alignments)})
        if entry is not None:
            skipped.append(entry)
            continue
        kept.append((row, readers))
        columns = audio_columns * len(segments) if segmenter is not None else audio_columns
        spans += [(len(kept) - 1, c, segment) for c, segment in zip(columns, segments, strict=True)]
    units: list = [None] * len(spans)
    durations: list = [None] * len(spans)
    failed: dict[int, str] = {}  # kept rows whose audio fails past its header: skipped, like unreadable ones
    for batch in sample_budget_batches([segment.num_samples for _, _, segment in spans], max_batch_samples):
        waveforms, read = [], []
        for j in batch:
            i, column, segment = spans[j]
            try:
                waveforms.append(kept[i][1][column].read(segment.start, segment.stop))
                read.append(j)
            except DataError as err:
                failed.setdefault(i, str(err))
        for j, frames in zip(read, extractor(waveforms) if waveforms else [], strict=True):
            i, _, segment = spans[j]
            frames = frames[segment.keep_start : segment.keep_stop]
            if frames.shape[0] == 0:
                raise DataError(f"{_row_file(kept[i][0], audio_columns)}: audio too short for one feature frame")
            units[j], durations[j] = to_units(frames, assigner, dedup)
        if progress is not None:
            progress.add_audio(sum(spans[j][2].num_samples for j in batch) / SAMPLE_RATE)
    skipped += [{"file": _row_file(kept[i][0], audio_columns), "error": error} for i, error in failed.items()]
    seconds = (
        sum(r.num_samples for i, (_, rs) in enumerate(kept) if i not in failed for r in rs.values()) / SAMPLE_RATE
    )
    output: list[dict] = []
    for j, (i, column, segment) in enumerate(spans):
        if i in failed:
            continue
        row = kept[i][0]
        if segmenter is None and column != audio_columns[0]:
            out = output[-1]  # the row's other audio columns join its first one's output row
        else:
            out = {k: v for k, v in row.items() if k not in audio_columns}
            out.setdefault("file", _row_file(row, audio_columns))
            if segmenter is not None:
                out["start"], out["end"] = segment.begin, segment.end
            if j in words:
                out[ALIGNMENT_COLUMN] = words[j]
                if isinstance(row.get("text"), str):
                    out["text"] = " ".join(str(w["word"]) for w in words[j])
            output.append(out)
        name = units_column_name(column)
        out[name] = units[j]
        if keep_durations:
            out["duration" if name == "units" else f"{name}_duration"] = durations[j]
    return output, skipped, seconds


def too_short(file: str, column: str, samples: int, file_rate: int, min_samples: int) -> dict | None:
    """The report entry for audio of `samples` samples at 16 kHz (its file at `file_rate` Hz) shorter than the
    `min_samples` the feature model needs for one frame (its receptive field, e.g. 400 for HuBERT base), or None.
    Lengths are given in samples and seconds at 16 kHz; a resampled file also gets its minimum at its own rate."""
    if samples >= min_samples:
        return None
    entry = {"file": file, "column": column, "samples": samples, "seconds": samples / SAMPLE_RATE,
             "min_samples": min_samples, "min_seconds": min_samples / SAMPLE_RATE}  # fmt: skip
    at_file_rate = ""
    if file_rate != SAMPLE_RATE:
        entry["file_rate"] = file_rate
        entry["file_min_samples"] = samples_before_resampling(min_samples, file_rate)
        at_file_rate = f"; {entry['file_min_samples']} at the file's {file_rate} Hz"
    where = file if column == "audio" else f"{file} ({column})"
    entry["error"] = (
        f"{where}: audio too short for one feature frame: {samples} samples ({samples / SAMPLE_RATE:.4f} s) at "
        f"{SAMPLE_RATE} Hz, the feature model needs {min_samples} ({min_samples / SAMPLE_RATE:.4f} s{at_file_rate})"
    )
    return entry


def _row_file(row: dict, audio_columns: list[str]) -> str:
    if isinstance(row.get("file"), str):
        return row["file"]
    value = row.get(audio_columns[0])
    if isinstance(value, dict):
        return str(value.get("path") or "")
    return str(value) if isinstance(value, str) else ""


def write_shard(path: str, rows: list[dict], unit_columns: list[str]) -> None:
    """Rows → one parquet file, unit columns as list<uint16>, written to a temporary name and renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {}
    for name in rows[0]:
        values = [row.get(name) for row in rows]
        if name in unit_columns:
            offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
            flat = np.concatenate(values) if values else np.zeros(0, np.uint16)
            columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.uint16()))
        else:
            columns[name] = pa.array(values)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as temporary:
        pq.write_table(pa.table(columns), temporary)


class AudioProgress:
    """A tqdm bar over rows whose postfix reports audio hours per second."""

    def __init__(self, total: int | None, disable: bool = False):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="file", desc="Audio → units", disable=disable, dynamic_ncols=True)
        self.audio_seconds = 0.0
        self.start = time.perf_counter()

    def add_audio(self, seconds: float) -> None:
        self.audio_seconds += seconds
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        hours = self.audio_seconds / 3600
        self.bar.set_postfix_str(f"{hours:.3f} h audio, {hours / elapsed:.4f} audio-h/s", refresh=False)

    def update(self, rows: int) -> None:
        self.bar.update(rows)

    def close(self) -> None:
        self.bar.close()


def check_run_settings(output_dir: str, settings: dict, overwrite: bool = False) -> bool:
    """A rerun into the same folder resumes only with the same settings; a folder that holds something else is
    refused. Returns True when the folder holds a tokenisation with other settings that `overwrite` allows to
    replace: `clear_run` must then remove it (on the main process) before anything is written."""
    path = os.path.join(output_dir, CONFIG_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
        differs = sorted(k for k in settings if previous.get(k) != settings[k])
        if differs and not overwrite:
            raise ConfigError(
                f"{output_dir}: holds a tokenisation with other settings ({', '.join(differs)}); choose another "
                "output_dir or pass overwrite_output_dir"
            )
        return bool(differs)
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ConfigError(f"{output_dir}: exists and is not a tokenisation output; choose another output_dir")
    return False


def clear_run(output_dir: str) -> None:
    """Remove a tokenisation's own files from `output_dir` (its shards, done-marks, report and settings), so that
    a run with other settings starts afresh; anything else in the folder is left."""
    import shutil

    for name in (os.path.dirname(SHARD_FILE), os.path.dirname(DONE_FILE)):
        shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    for name in (REPORT_FILE, CONFIG_FILE):
        if os.path.isfile(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))


def tokenize_audio(
    source: str,
    output_dir: str,
    extractor,
    assigner,
    *,
    split: str = "train",
    config_name: str | None = None,
    streaming: bool = False,
    audio_columns: list[str] | None = None,
    shard_size: int = 1000,
    dedup: bool = True,
    keep_durations: bool = False,
    max_batch_seconds: float = 100.0,
    segmenter: Segmenter | None = None,
    process_index: int = 0,
    num_processes: int = 1,
    disable_progress: bool = False,
    opened: tuple | None = None,
) -> dict:
    """Tokenise `source` into the units dataset `output_dir`; this process takes shards `index % num_processes ==
    process_index` and skips shards already done. `segmenter` cuts long recordings when the source has one audio
    column (rows of several, such as preference pairs, are aligned and stay whole). `opened` is what
    `open_audio_source` returned for `source` when the caller opened it already (to check it before writing
    anything). Returns a summary (shards written / skipped, files, rows, seconds)."""
    rows, columns, total = opened or open_audio_source(
        source, split=split, config_name=config_name, streaming=streaming, audio_columns=audio_columns
    )
    if segmenter is not None and len(columns) > 1:
        logger.warning(
            "%d audio columns %s: rows are aligned audio, tokenised whole, not segmented", len(columns), columns
        )
        segmenter = None
    unit_columns = [units_column_name(c) for c in columns]
    progress = AudioProgress(total, disable=disable_progress or process_index != 0)
    summary = {
        "shards_written": 0,
        "shards_skipped": 0,
        "files": 0,
        "rows": 0,
        "skipped_files": 0,
        "audio_seconds": 0.0,
    }
    start = time.perf_counter()
    try:
        for index, shard_rows in shards(rows, shard_size):
            if index % num_processes != process_index:
                continue
            done = os.path.join(output_dir, DONE_FILE.format(index))
            if os.path.isfile(done):
                summary["shards_skipped"] += 1
                progress.update(len(shard_rows))
                continue
            out, skipped, seconds = tokenize_rows(
                shard_rows,
                columns,
                extractor,
                assigner,
                dedup=dedup,
                keep_durations=keep_durations,
                max_batch_samples=int(max_batch_seconds * SAMPLE_RATE),
                segmenter=segmenter,
                progress=progress,
            )
            if out:
                write_shard(os.path.join(output_dir, SHARD_FILE.format(index)), out, unit_columns)
            os.makedirs(os.path.dirname(done), exist_ok=True)
            with atomic_write(done) as f:
                json.dump({"rows": len(out), "skipped": skipped, "audio_seconds": seconds}, f)
            progress.update(len(shard_rows))
            summary["shards_written"] += 1
            summary["files"] += len(shard_rows) - len(skipped)
            summary["rows"] += len(out)
            summary["skipped_files"] += len(skipped)
            summary["audio_seconds"] += seconds
            for item in skipped:
                logger.warning("skipped %s", item["error"])
    finally:
        progress.close()
    summary["seconds"] = time.perf_counter() - start
    return summary


def write_report(output_dir: str, source: str = "source") -> list[dict]:
    """Gather every shard's skipped files into `tokenize_report.jsonl` (run once, after all processes are done) and
    return them. Raises DataError naming `source` when no shard holds a row: every file was skipped."""
    folder = os.path.join(output_dir, os.path.dirname(DONE_FILE))
    skipped = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                skipped += json.load(f)["skipped"]
    report = os.path.join(output_dir, REPORT_FILE)
    with atomic_write(report) as f:
        f.writelines(json.dumps(item) + "\n" for item in skipped)
    shards = os.path.join(output_dir, os.path.dirname(SHARD_FILE))
    if not (os.path.isdir(shards) and os.listdir(shards)):
        raise DataError(f"{source}: no units written, every file was skipped ({len(skipped)} listed in {report})")
    return skipped


def recorded_unit_tokenizer(sources: list[str]) -> dict | None:
    """How the units of local dataset folders were made, from what made them: `tokenize_config.json` of
    `recipes/tokenize_audio.py`, or a built corpus's `corpus.json` (the demo's) (in the folder or its parent)."""
    for source in sources:
        folder = source if os.path.isdir(source) else os.path.dirname(source)
        if not folder or not os.path.isdir(folder):  # a Hub dataset name
            continue
        for where in (folder, os.path.dirname(os.path.abspath(folder))):
            config_path, manifest_path = os.path.join(where, CONFIG_FILE), os.path.join(where, CORPUS_MANIFEST)
            if os.path.isfile(config_path):
                with open(config_path) as f:
                    settings = json.load(f)
                keys = ("backend", "feature_model", "layer", "mfcc_frame_rate", "kmeans_path", "num_units", "dedup")
                return {k: settings.get(k) for k in keys} | {"source": config_path}
            if os.path.isfile(manifest_path):
                with open(manifest_path) as f:
                    units = json.load(f).get("units")
                if units:
                    return dict(units) | {"source": manifest_path}
    return None
