"""Converters from the published evaluation layouts to pair datasets of units (see `slam_recipes.evaluation.likelihood`).

Each layout reader turns a folder into pair records — which audio file is the positive, which the negative, and the
grouping columns — pairing files by their names or by `gold.csv`, never by directory order:

- `zr2021`: a ZeroSpeech 2021 lexical (sWUGGY) or syntactic (sBLIMP) folder, `gold.csv` + `<filename>.wav`; the
  `correct` = 1 and 0 rows of the same `id` and `voice` form the pairs;
- `storycloze`: a Spoken or Topic StoryCloze folder, `<idx>_<positive_suffix>.wav` / `<idx>_<negative_suffix>.wav`;
- `salmon`: SALMon, `<part>/sample_<i>_<option>.wav` with option 0 the positive (the root with its eight part
  folders, or one part).

The audio files then become units through a unit source: for now a units dataset made beforehand (rows with a file
name and its units), looked up by file name.
"""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from slam_recipes.audio.features import AUDIO_EXTENSIONS
from slam_recipes.errors import DataError

FILE_COLUMNS = ("file", "file_name", "filename", "path", "audio_path", "audio_filepath")
SALMON_PARTS = (
    "bg_alignment",
    "bg_all_consistency",
    "bg_domain_consistency",
    "gender_consistency",
    "rir_consistency",
    "sentiment_alignment",
    "sentiment_consistency",
    "speaker_consistency",
)
_SALMON_FILE = re.compile(r"^sample_(\d+)_(\d+)$")


@dataclass
class PairRecord:
    """One pair of audio files (paths relative to the benchmark folder) and its grouping columns."""

    positive: str
    negative: str
    columns: dict[str, object] = field(default_factory=dict)
    where: str = ""  # for errors: the gold.csv lines or the file names the pair came from


def _audio_files(folder: str) -> list[str]:
    return sorted(
        name
        for name in os.listdir(folder)
        if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS and os.path.isfile(os.path.join(folder, name))
    )


def _require_folder(folder: str) -> None:
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such benchmark folder")


# ---------------------------------------------------------------------------------------------------------------------
# ZeroSpeech 2021 lexical / syntactic
# ---------------------------------------------------------------------------------------------------------------------
def read_zr2021(folder: str) -> list[PairRecord]:
    """Pairs of a ZeroSpeech 2021 `lexical/{dev,test}` or `syntactic/{dev,test}` folder from its `gold.csv`.

    Rows of the same (`id`, `voice`) with `correct` 1 and 0 form the pairs (in file order when an item has several);
    `frequency` (lexical) and `type` / `subtype` (syntactic) are kept for the official breakdowns, and the word or
    transcription as the pair's texts.
    """
    _require_folder(folder)
    gold = os.path.join(folder, "gold.csv")
    if not os.path.isfile(gold):
        raise DataError(f"{folder}: missing gold.csv (a ZeroSpeech 2021 lexical|syntactic/<split> folder holds one)")
    with open(gold, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("filename", "id", "correct") if c not in header]
        if missing:
            raise DataError(f"{gold}: missing column(s) {missing} (found {header})")
        rows = [(line, row) for line, row in enumerate(reader, start=2)]
    if not rows:
        raise DataError(f"{gold}: no rows")
    text_column = "word" if "word" in header else "transcription" if "transcription" in header else None
    items: dict[tuple, dict[int, list]] = defaultdict(lambda: {1: [], 0: []})
    for line, row in rows:
        correct = (row.get("correct") or "").strip()
        if correct not in ("0", "1"):
            raise DataError(f"{gold} line {line}: correct must be 1 or 0, got {correct!r}")
        filename = (row.get("filename") or "").strip()
        if not filename:
            raise DataError(f"{gold} line {line}: empty filename")
        path = filename if os.path.splitext(filename)[1].lower() in AUDIO_EXTENSIONS else filename + ".wav"
        if not os.path.isfile(os.path.join(folder, path)):
            raise DataError(f"{gold} line {line}: audio file {os.path.join(folder, path)} not found")
        items[(row["id"].strip(), (row.get("voice") or "").strip())][int(correct)].append((line, path, row))
    records = []
    for (item, voice), by_label in items.items():
        positives, negatives = by_label[1], by_label[0]
        if len(positives) != len(negatives):
            lines = ", ".join(str(line) for line, _, _ in sorted(positives + negatives))
            raise DataError(
                f"{gold} lines {lines}: id {item!r}"
                + (f" voice {voice!r}" if voice else "")
                + f" has {len(positives)} correct and {len(negatives)} incorrect rows (unequal positives/negatives)"
            )
        for (pos_line, pos_path, pos_row), (neg_line, neg_path, neg_row) in zip(positives, negatives, strict=True):
            columns: dict[str, object] = {"id": item}
            if "voice" in header:
                columns["voice"] = voice
            if "frequency" in header:
                columns["frequency"] = _int(pos_row.get("frequency"), gold, pos_line)
            for name in ("type", "subtype"):
                if name in header:
                    columns[name] = (pos_row.get(name) or "").strip()
            if text_column:
                columns["positive_text"] = (pos_row.get(text_column) or "").strip()
                columns["negative_text"] = (neg_row.get(text_column) or "").strip()
            records.append(PairRecord(pos_path, neg_path, columns, where=f"{gold} lines {pos_line}/{neg_line}"))
    return records


def _int(value, path: str, line: int) -> int:
    text = (value or "").strip()
    if not text:
        return 0
    try:
        return int(float(text))
    except ValueError as err:
        raise DataError(f"{path} line {line}: frequency {text!r} is not a number") from err


# ---------------------------------------------------------------------------------------------------------------------
# Spoken / Topic StoryCloze
# ---------------------------------------------------------------------------------------------------------------------
def read_storycloze(
    folder: str, positive_suffix: str = "correct", negative_suffix: str = "incorrect"
) -> list[PairRecord]:
    """Pairs of a Spoken (sSC) or Topic (tSC) StoryCloze folder: `<idx>_<positive_suffix>.<ext>` with
    `<idx>_<negative_suffix>.<ext>`. Other audio files (e.g. a shared `<idx>_mutual.wav` prompt) are ignored; an
    index with a positive and no negative, or the reverse, is an error."""
    _require_folder(folder)
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for name in _audio_files(folder):
        stem = os.path.splitext(name)[0]
        index, sep, label = stem.partition("_")
        if not sep or label not in (positive_suffix, negative_suffix):
            continue
        if label in found[index]:
            raise DataError(f"{folder}: two audio files for {index}_{label} ({found[index][label]}, {name})")
        found[index][label] = name
    if not found:
        raise DataError(
            f"{folder}: no <idx>_{positive_suffix} / <idx>_{negative_suffix} audio files (set positive_suffix and "
            "negative_suffix to the folder's naming)"
        )
    records = []
    for index in sorted(found, key=lambda i: (0, int(i), "") if i.isdigit() else (1, 0, i)):
        files = found[index]
        for have, lack in ((positive_suffix, negative_suffix), (negative_suffix, positive_suffix)):
            if lack not in files:
                raise DataError(f"{os.path.join(folder, files[have])}: no matching {index}_{lack} file")
        records.append(
            PairRecord(files[positive_suffix], files[negative_suffix], {"id": index}, where=files[positive_suffix])
        )
    return records


# ---------------------------------------------------------------------------------------------------------------------
# SALMon
# ---------------------------------------------------------------------------------------------------------------------
def read_salmon(folder: str) -> list[PairRecord]:
    """Pairs of SALMon: `sample_<i>_0` (positive) against each other option `sample_<i>_<j>` of the same sample.
    `folder` is the SALMon root (part folders inside) or one part folder; the part is kept as `part` and the sample
    as `id` (`<part>/<i>`)."""
    _require_folder(folder)
    if any(_SALMON_FILE.match(os.path.splitext(n)[0]) for n in _audio_files(folder)):
        parts = [("", os.path.basename(os.path.normpath(folder)))]
    else:
        names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        parts = [
            (d, d)
            for d in names
            if any(_SALMON_FILE.match(os.path.splitext(n)[0]) for n in _audio_files(os.path.join(folder, d)))
        ]
        if not parts:
            raise DataError(
                f"{folder}: no sample_<i>_<option> audio files here or in part folders ({', '.join(SALMON_PARTS)})"
            )
    records = []
    for subfolder, part in parts:
        samples: dict[int, dict[int, str]] = defaultdict(dict)
        for name in _audio_files(os.path.join(folder, subfolder)):
            match = _SALMON_FILE.match(os.path.splitext(name)[0])
            if match:
                samples[int(match[1])][int(match[2])] = os.path.join(subfolder, name) if subfolder else name
        for sample in sorted(samples):
            options = samples[sample]
            if 0 not in options or len(options) < 2:
                what = "option 0 (the positive)" if 0 not in options else "a negative option"
                raise DataError(f"{os.path.join(folder, subfolder)}: sample_{sample} has no {what}")
            for option in sorted(options)[1:]:
                records.append(
                    PairRecord(options[0], options[option], {"id": f"{part}/{sample}", "part": part}, where=options[0])
                )
    return records


LAYOUTS: dict[str, Callable[..., list[PairRecord]]] = {
    "zr2021": read_zr2021,
    "storycloze": read_storycloze,
    "salmon": read_salmon,
}


# ---------------------------------------------------------------------------------------------------------------------
# Audio files → units
# ---------------------------------------------------------------------------------------------------------------------
def _key(path: str) -> str:
    """A file's lookup key: its path with `/` separators and no audio extension."""
    path = path.replace("\\", "/")
    stem, ext = os.path.splitext(path)
    return stem if ext.lower() in AUDIO_EXTENSIONS else path


class UnitTable:
    """Units of audio files already tokenised, looked up by file name: a dataset (any form `load_source` reads) with
    a file column (`file`, `file_name`, `path`, ...) and a units column (`units` or `audio_repr`).

    A benchmark file `bg_alignment/sample_3_0.wav` matches a row whose file is that path, ends with it
    (`/data/salmon/bg_alignment/sample_3_0.wav`), or is its bare name when that name is unique in the table.
    """

    def __init__(
        self,
        source: str,
        num_units: int,
        *,
        units_column: str | None = None,
        file_column: str | None = None,
        dedup: bool = False,
    ):
        from slam_recipes.data.sources import detect_units_column, load_source, read_units

        self.source = source
        self.units: list[np.ndarray] = []
        self.by_name: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for label, dataset in load_source(source, split="train"):
            column = detect_units_column(dataset, label, units_column)
            names = self._file_column(dataset, label, file_column)
            table = dataset.with_format("arrow")[:]
            values, offsets = read_units(
                table.column(column), num_units=num_units, label=label, first_row=0, dedup=dedup
            )
            for row, name in enumerate(table.column(names).to_pylist()):
                if not name:
                    raise DataError(f"{label} row {row}: empty {names!r}")
                key = _key(str(name))
                self.by_name[key.rsplit("/", 1)[-1]].append((key, len(self.units)))
                self.units.append(values[offsets[row] : offsets[row + 1]])

    @staticmethod
    def _file_column(dataset, label: str, file_column: str | None) -> str:
        columns = list(dataset.column_names)
        if file_column is not None:
            if file_column not in columns:
                raise DataError(f"{label}: missing column {file_column!r} (found {columns})")
            return file_column
        for name in FILE_COLUMNS:
            if name in columns:
                return name
        raise DataError(f"{label}: no file-name column: expected one of {list(FILE_COLUMNS)}, found {columns}")

    def lookup(self, path: str, where: str) -> np.ndarray:
        """Units of the benchmark file `path` (relative to the benchmark folder); `where` names it in errors."""
        key = _key(path)
        candidates = self.by_name.get(key.rsplit("/", 1)[-1], [])
        exact = [row for name, row in candidates if name == key]
        matches = exact or [row for name, row in candidates if name.endswith("/" + key) or key.endswith("/" + name)]
        if not matches:
            raise DataError(f"{where}: no units for {path} in {self.source}")
        if len(matches) > 1:
            raise DataError(
                f"{where}: {len(matches)} rows of {self.source} match {path}; store file paths relative to the "
                "benchmark folder so names are unique"
            )
        return self.units[matches[0]]


def convert_benchmark(
    layout: str,
    input_dir: str,
    units_source: str,
    output_dir: str,
    *,
    num_units: int = 500,
    units_column: str | None = None,
    file_column: str | None = None,
    dedup: bool = False,
    overwrite: bool = False,
    **layout_options,
):
    """Read a published layout, look its audio files up in `units_source`, and save the pair dataset to
    `output_dir` (`save_to_disk`, written to a temporary folder and renamed when complete). Returns the dataset."""
    import shutil

    from datasets import Dataset, Features, List, Value

    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}: choose one of {sorted(LAYOUTS)}")
    if os.path.exists(output_dir) and not overwrite:
        raise DataError(f"{output_dir}: already exists (pass overwrite_output_dir to replace it)")
    records = LAYOUTS[layout](input_dir, **layout_options)
    table = UnitTable(units_source, num_units, units_column=units_column, file_column=file_column, dedup=dedup)
    rows: dict[str, list] = {"positive": [], "negative": [], "positive_file": [], "negative_file": []}
    column_names = list(dict.fromkeys(name for record in records for name in record.columns))
    for name in column_names:
        rows[name] = []
    for record in records:
        rows["positive"].append(table.lookup(record.positive, record.where).astype(np.uint16))
        rows["negative"].append(table.lookup(record.negative, record.where).astype(np.uint16))
        rows["positive_file"].append(record.positive)
        rows["negative_file"].append(record.negative)
        for name in column_names:
            rows[name].append(record.columns.get(name))
    features = {"positive": List(Value("uint16")), "negative": List(Value("uint16"))}
    for name in rows:
        if name not in features:
            features[name] = Value("int64") if name == "frequency" else Value("string")
    dataset = Dataset.from_dict(rows, features=Features(features))
    partial = output_dir.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        dataset.save_to_disk(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    os.replace(partial, output_dir)
    return dataset
