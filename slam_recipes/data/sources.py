"""Unit datasets: load (Hub / save_to_disk folder / files), normalise to token ids, mix, split, then pack
(`slam_recipes.data.packing`).

Every accepted input form ends as one column, `input_ids`, of uint16 token ids (`<S> units+2 … <S>`), at most
`context_length` long (a longer utterance becomes consecutive pieces: see `normalize_batch`). Preparation runs
through `datasets.map`, so it is cached on disk and happens before the trainer (and its time budget) starts.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import concatenate_datasets, interleave_datasets, load_dataset, load_from_disk

from slam_recipes.configs import DATASET_CONFIG_KEYS, check_mixture
from slam_recipes.data.packing import pack
from slam_recipes.errors import DataError, first_line_and_cause
from slam_recipes.files import file_builder
from slam_recipes.units import NUM_SPECIAL, frame_units, parse_unit_strings

UNITS_COLUMNS = ("units", "audio_repr")  # slamkit features JSONL / slamkit tokens JSONL


# ---------------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------------
def load_source(
    source: str,
    split: str = "train",
    config_name: str | None = None,
    *,
    data_dir: str | None = None,
    data_files=None,
) -> list[tuple[str, object]]:
    """Load one `--dataset_name` value as `[(label, Dataset), ...]`.

    `source` is a Hub dataset name, a `save_to_disk` folder, a folder of data files, or a jsonl/parquet/arrow file
    or glob (each file is loaded on its own so errors can name it). `label` names the file or split for errors.
    `data_dir` and `data_files` go to `datasets.load_dataset` (Hub datasets and folders of data files).
    """
    by_builder = {"data_dir": data_dir, "data_files": data_files}
    by_builder = {key: value for key, value in by_builder.items() if value is not None}
    try:
        saved = any(os.path.isfile(os.path.join(source, name)) for name in ("dataset_dict.json", "state.json"))
        if by_builder and (saved or glob.has_magic(source) or os.path.isfile(source)):
            raise DataError(f"{source}: data_dir and data_files apply to Hub datasets and folders of data files")
        if os.path.isdir(source):
            label = f"{source} [{split}]"
            if os.path.isfile(os.path.join(source, "dataset_dict.json")):
                dataset_dict = load_from_disk(source)
                if split not in dataset_dict:
                    raise DataError(f"{source}: no split {split!r} (has {sorted(dataset_dict)})")
                return [(label, dataset_dict[split])]
            if os.path.isfile(os.path.join(source, "state.json")):
                if split != "train":
                    raise DataError(f"{source}: a single saved Dataset has no {split!r} split")
                return [(source, load_from_disk(source))]
            return [(label, load_dataset(source, config_name, split=split, **by_builder))]
        if glob.has_magic(source) or file_builder(source):
            files = sorted(glob.glob(source))
            if not files:
                raise DataError(f"{source}: no such file")
            if split != "train":
                raise DataError(
                    f"{source}: data files have no {split!r} split; name the {split} files as their own source, "
                    f"use a folder holding {split}.jsonl, or validation_fraction"
                )
            loaded = []
            for path in files:
                builder = file_builder(path)
                if builder is None:
                    raise DataError(f"{path}: unsupported file type (use .jsonl, .json, .parquet or .arrow)")
                loaded.append((path, load_dataset(builder, data_files=path, split="train")))
            return loaded
        if os.path.exists(source):
            raise DataError(f"{source}: unsupported file type (use .jsonl, .json, .parquet or .arrow)")
        return [(f"{source} [{split}]", load_dataset(source, config_name, split=split, **by_builder))]
    except DataError:
        raise
    except Exception as err:  # whatever `datasets` raises for a bad source becomes one line naming it
        raise DataError(f"{source}: cannot load split {split!r}: {first_line_and_cause(err)}") from err


def detect_units_column(dataset, label: str, units_column: str | None = None) -> str:
    """The column holding units: `units_column` if given, else `units` (int lists) or `audio_repr` (unit strings)."""
    columns = list(dataset.column_names)
    if units_column is not None:
        if units_column not in columns:
            raise DataError(f"{label}: missing column {units_column!r} (found {columns})")
        column = units_column
    else:
        found = [c for c in UNITS_COLUMNS if c in columns]
        if not found:
            raise DataError(
                f"{label}: no unit column: expected 'units' (integer lists) or 'audio_repr' (unit strings), "
                f"found {columns}; set units_column to choose one"
            )
        column = found[0]
    check_units_column(dataset, column, label)
    return column


def check_units_column(dataset, column: str, label: str) -> None:
    """`column` must hold integer lists, `<UnK>` strings, or slamkit features dicts (`{"units": [...], ...}`)."""
    feature = dataset.features[column]
    if isinstance(feature, dict) and "units" in feature:  # slamkit features dict
        feature = feature["units"]
    inner = getattr(feature, "feature", None)
    dtype = getattr(inner, "dtype", None) if inner is not None else getattr(feature, "dtype", None)
    if inner is not None and dtype is not None and ("int" in dtype or dtype == "null"):  # null: all rows empty
        return
    if inner is None and dtype in ("string", "large_string"):
        return
    element = dtype or ("structs" if isinstance(inner, dict) else type(inner).__name__)  # a list of dicts: no dtype
    kind = f"lists of {element}" if inner is not None else (dtype or type(feature).__name__)
    raise DataError(f"{label}: column {column!r} holds {kind}; expected integer lists or <UnK> strings")


# ---------------------------------------------------------------------------------------------------------------------
# Normalising rows to token ids (vectorised over a batch of rows)
# ---------------------------------------------------------------------------------------------------------------------
def _ragged_from_column(
    column: pa.ChunkedArray | pa.Array, label: str, first_row: int
) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a list, unit-string, or features-dict column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_struct(column.type):  # slamkit features dict: {"units": [...], "duration": [...]}
        column = column.field("units")
    if column.null_count:
        bad = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{label} row {first_row + bad}: empty unit sequence (null)")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return parse_unit_strings(column, lambda i: f"{label} row {first_row + i}")
    offsets = column.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    values = column.flatten().to_numpy(zero_copy_only=False)  # the stored integer type: no widening copy
    return values, offsets


def read_units(
    column: pa.ChunkedArray | pa.Array, *, num_units: int, label: str, first_row: int, dedup: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of a units column → validated (and optionally deduplicated) unit values + row offsets."""
    values, offsets = _ragged_from_column(column, label, first_row)
    return validate_units(values, offsets, num_units=num_units, label=label, first_row=first_row, dedup=dedup)


def validate_units(
    values: np.ndarray, offsets: np.ndarray, *, num_units: int, label: str, first_row: int, dedup: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Refuse empty rows and ids outside [0, num_units) naming the row; collapse repeats when `dedup`."""
    lengths = np.diff(offsets)
    if lengths.size and lengths.min() == 0:
        raise DataError(f"{label} row {first_row + int(np.argmin(lengths))}: empty unit sequence")
    if values.size and (values.min() < 0 or values.max() >= num_units):  # two reductions; locate only on failure
        bad = np.flatnonzero((values < 0) | (values >= num_units))
        row = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise DataError(f"{label} row {first_row + row}: unit id {int(values[bad[0]])} outside [0, {num_units})")
    if dedup and values.size:
        keep = np.ones(values.size, dtype=bool)
        keep[1:] = values[1:] != values[:-1]
        keep[offsets[:-1]] = True
        lengths = np.add.reduceat(keep.astype(np.int64), offsets[:-1])
        values = values[keep]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
    return values, offsets


def normalize_batch(
    values: np.ndarray,
    offsets: np.ndarray,
    *,
    num_units: int,
    label: str,
    first_row: int,
    dedup: bool = False,
    add_bos_eos: bool = True,
    min_units: int = 1,
    max_units: int | None = None,
    context_length: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows (flat `values` + `offsets`) → token-id rows, validated, deduplicated, framed, filtered and chunked.

    Errors name the row: `label row N: ...`. Returns (token ids as uint16, offsets).

    A row longer than the context is framed whole (`units.frame_units`), then cut every `context_length` tokens
    (`chunk_offsets`): only its first piece starts with `<S>` and only its last ends with `<S>`; continuation pieces
    start mid-utterance, with no `<S>` added. slamkit does the same (slamkit/tokeniser/unit_tokeniser.py:43 frames;
    slamkit/data/hf_dataset.py:21-26 and :107-109 cut, "not adding special tokens individually"). Why: evaluation
    scores `<S> units <S>` and generation continues `<S> units`, so `<S>` must mean only a true start or end;
    framing every piece would teach a false start and a false end at every cut. The cost: a continuation piece's
    first token is not predicted (nothing precedes it), nor is a last piece that is a lone `<S>`, as in slamkit;
    `block` packing joins the pieces back into one stream.
    """
    values, offsets = validate_units(
        values, offsets, num_units=num_units, label=label, first_row=first_row, dedup=dedup
    )
    lengths = np.diff(offsets)
    # Length filter (on units, before framing); the common case, nothing filtered, costs no pass over the values.
    row_keep = lengths >= min_units
    if max_units is not None:
        row_keep &= lengths <= max_units
    if not row_keep.all():
        values = values[np.repeat(row_keep, lengths)]
        lengths = lengths[row_keep]
    row_offsets = np.concatenate([[0], np.cumsum(lengths)])
    if add_bos_eos:
        ids, row_offsets = frame_units(values, row_offsets)
    else:
        ids = values.astype(np.uint16)  # ids < num_units + 2 fit: a unit vocabulary is far below 65,536
        ids += NUM_SPECIAL
    return ids, chunk_offsets(row_offsets, context_length)


def chunk_offsets(offsets: np.ndarray, context_length: int) -> np.ndarray:
    """Split every row [offsets[i], offsets[i+1]) into consecutive pieces of `context_length` (the last one shorter)
    and return the new offsets; tokens are neither added nor dropped (see `normalize_batch` for the framing)."""
    lengths = np.diff(offsets)
    if lengths.size == 0 or lengths.max() <= context_length:
        return offsets
    pieces = -(-lengths // context_length)  # ceil
    row = np.repeat(np.arange(lengths.size), pieces)
    index_in_row = np.arange(row.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    piece_starts = offsets[:-1][row] + index_in_row * context_length
    return np.concatenate([piece_starts, offsets[-1:]])


def _normalize_map(
    batch: pa.Table,
    indices: list[int],
    column: str,
    label: str,
    **options,
) -> pa.Table:
    first_row = indices[0] if len(indices) else 0
    values, offsets = _ragged_from_column(batch.column(column), label, first_row)
    ids, new_offsets = normalize_batch(values, offsets, label=label, first_row=first_row, **options)
    input_ids = pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), pa.array(ids, pa.uint16()))
    return pa.table({"input_ids": input_ids})


def to_token_ids(
    dataset,
    label: str,
    *,
    num_units: int,
    units_column: str | None = None,
    dedup: bool = False,
    add_bos_eos: bool = True,
    min_units: int = 1,
    max_units: int | None = None,
    context_length: int = 1024,
    num_proc: int | None = None,
):
    """One loaded dataset → a dataset with only `input_ids` (uint16 token ids), cached by `datasets`."""
    column = detect_units_column(dataset, label, units_column)
    options = dict(
        column=column,
        label=label,
        num_units=num_units,
        dedup=dedup,
        add_bos_eos=add_bos_eos,
        min_units=min_units,
        max_units=max_units,
        context_length=context_length,
    )
    return (
        dataset.with_format("arrow")
        .map(
            _normalize_map,
            batched=True,
            batch_size=10_000,
            with_indices=True,
            remove_columns=dataset.column_names,
            fn_kwargs=options,
            num_proc=num_proc,
            desc=f"Units → token ids ({label})",
        )
        .with_format(None)
    )


# ---------------------------------------------------------------------------------------------------------------------
# Mixing, splitting, packing
# ---------------------------------------------------------------------------------------------------------------------
def mix(
    datasets: Sequence,
    ratios: Sequence[float] | None = None,
    seed: int = 42,
    stopping_strategy: str = "first_exhausted",
    names: Sequence[str] | None = None,
):
    """Concatenate the datasets, or, with `ratios`, interleave them sampling each with that probability.

    `names` label the datasets in errors (default `dataset i`). A mixture that cannot be sampled is refused
    (`DataError`, naming the dataset) before `interleave_datasets` would fail naming only its index: a dataset with
    a positive ratio but no rows, or, under `all_exhausted`, one with ratio 0 (never drawn, so never exhausted).
    """
    if len(datasets) == 1 and ratios is None:
        return datasets[0]
    if ratios is None:
        return concatenate_datasets(list(datasets))
    names = list(names) if names is not None else [f"dataset {i}" for i in range(len(datasets))]
    check_ratios(names, ratios, stopping_strategy)
    for name, ratio, dataset in zip(names, ratios, datasets, strict=True):
        if ratio > 0 and len(dataset) == 0:
            raise DataError(
                f"{name}: no rows to sample, but dataset_ratios gives it {ratio:g} (the source is empty or every "
                "row was filtered out, e.g. by min_units / max_units); drop the source or give it ratio 0"
            )
    total = float(sum(ratios))
    return interleave_datasets(
        list(datasets), probabilities=[r / total for r in ratios], seed=seed, stopping_strategy=stopping_strategy
    )


def check_ratios(names: Sequence[str], ratios: Sequence[float], stopping_strategy: str = "first_exhausted") -> None:
    """`ratios` must give one non-negative value per source in `names`, with a positive sum, and under
    `all_exhausted` none may be 0 (a source never drawn is never exhausted). Raises `DataError` naming the source."""
    if len(ratios) != len(names):
        raise DataError(f"dataset_ratios has {len(ratios)} values for {len(names)} datasets")
    if any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise DataError(f"dataset_ratios must be non-negative with a positive sum, got {list(ratios)}")
    if stopping_strategy == "all_exhausted":
        for name, ratio in zip(names, ratios, strict=True):
            if ratio == 0:
                raise DataError(
                    f"{name}: dataset_ratios gives it 0, so mixture_stopping_strategy all_exhausted would never "
                    "exhaust it; give it a positive ratio, drop the source, or use first_exhausted"
                )


def as_mixture(
    dataset_name: Sequence[str] | None = None,
    datasets: Sequence[dict] | None = None,
    dataset_config: str | None = None,
    dataset_ratios: Sequence[float] | None = None,
) -> tuple[list[dict], list[float] | None]:
    """The recipe's sources as entries of TRL's dataset mixture (every `DATASET_CONFIG_KEYS` key, None where unset)
    and their sampling ratios (None: concatenate). `datasets` is the mixture as given (`fraction` → ratios); the
    short form `dataset_name` takes one `dataset_config` and `dataset_ratios` for all its paths. Neither is a
    DataError."""
    if not dataset_name and not datasets:
        raise DataError("dataset_name (or datasets) is required: a Hub dataset, a folder, or data files")
    if datasets is not None:
        check_mixture(list(datasets))
        entries = [as_entry(entry) for entry in datasets]
        fractions = [entry["fraction"] for entry in entries]
        return entries, None if fractions[0] is None else fractions
    entries = [as_entry(path, dataset_config) for path in dataset_name or []]
    return entries, None if dataset_ratios is None else list(dataset_ratios)


def as_entry(source: str | dict, config_name: str | None = None) -> dict:
    """A bare path (with `config_name`) or a partial mixture entry, as an entry with every DATASET_CONFIG_KEYS key."""
    given = {"path": source, "name": config_name} if isinstance(source, str) else dict(source)
    return dict.fromkeys(DATASET_CONFIG_KEYS) | given


def split_of(entry: dict, split: str, own_split: bool = True) -> str:
    """The split an entry is read from: its own `split` for training (`own_split`), else `split`."""
    return entry["split"] if own_split and entry["split"] else split


def load_entry(entry: str | dict, split: str, *, own_split: bool = True) -> list[tuple[str, object]]:
    """`load_source` for one mixture entry (or a bare path): its `name`, `data_dir`, `data_files`, its own `split`
    in place of `split` when `own_split` (the training split; an evaluation split applies to every source), and
    only its `columns` when it names them."""
    entry = as_entry(entry)
    loaded = load_source(
        entry["path"], split_of(entry, split, own_split), entry["name"], data_dir=entry["data_dir"],
        data_files=entry["data_files"],
    )  # fmt: skip
    if entry["columns"] is None:
        return loaded
    selected = []
    for label, dataset in loaded:
        missing = [c for c in entry["columns"] if c not in dataset.column_names]
        if missing:
            raise DataError(f"{label}: no column(s) {missing} (has {dataset.column_names})")
        selected.append((label, dataset.select_columns(entry["columns"])))
    return selected


def load_unit_datasets(
    sources: Sequence[str | dict],
    *,
    split: str = "train",
    config_name: str | None = None,
    ratios: Sequence[float] | None = None,
    stopping_strategy: str = "first_exhausted",
    seed: int = 42,
    num_proc: int | None = None,
    own_split: bool = True,
    **options,
):
    """Load every source (a path, or an entry of TRL's dataset mixture: see `as_mixture`, `load_entry`),
    normalise it to token ids, then mix (`mix`: concatenated, or sampled by `ratios`). `config_name` is the config
    of bare paths; `options` go to `to_token_ids`. A mixture that cannot be sampled is a `DataError` naming the
    source; a wrong `ratios` list is refused before any source is loaded."""
    entries = [as_entry(source, config_name) for source in sources]
    splits = [split_of(entry, split, own_split) for entry in entries]
    names = [e["path"] if s == "train" else f"{e['path']} [{s}]" for e, s in zip(entries, splits, strict=True)]
    if ratios is not None:
        check_ratios(names, ratios, stopping_strategy)
    prepared = []
    for entry in entries:
        parts = [
            to_token_ids(ds, label, num_proc=num_proc, **options)
            for label, ds in load_entry(entry, split, own_split=own_split)
        ]
        prepared.append(mix(parts))
    return mix(prepared, ratios, seed=seed, stopping_strategy=stopping_strategy, names=names)


def count_tokens(dataset) -> int:
    """Total tokens in the `input_ids` column, summed from Arrow list lengths (no Python loop over rows)."""
    total = 0
    for batch in dataset.with_format("arrow").iter(batch_size=100_000):
        total += pc.sum(pc.list_value_length(batch["input_ids"])).as_py() or 0
    return int(total)


def load_train_eval(
    load: Callable[..., object],
    dataset_split: str = "train",
    validation_split: str | None = None,
    validation_fraction: float = 0.0,
    seed: int = 42,
):
    """(train, eval or None): `load(split, own_split=True)` for training (each mixture entry may name its own
    training split), and for evaluation either `load(validation_split, own_split=False)` (that split for every
    source) or a held-out `validation_fraction` of the training rows."""
    if validation_split and validation_fraction:
        raise DataError("set validation_split or validation_fraction, not both")
    train = load(dataset_split, own_split=True)
    if validation_split:
        return train, load(validation_split, own_split=False)
    if validation_fraction:
        parts = train.train_test_split(test_size=validation_fraction, seed=seed)
        return parts["train"], parts["test"]
    return train, None


def build_pretraining_datasets(
    dataset_name: Sequence[str] | None = None,
    *,
    datasets: Sequence[dict] | None = None,
    num_units: int,
    context_length: int = 1024,
    packing: str = "padding_free",
    dataset_config: str | None = None,
    dataset_split: str = "train",
    validation_split: str | None = None,
    validation_fraction: float = 0.0,
    dataset_ratios: Sequence[float] | None = None,
    mixture_stopping_strategy: str = "first_exhausted",
    units_column: str | None = None,
    dedup: bool = False,
    add_bos_eos: bool = True,
    min_units: int = 1,
    max_units: int | None = None,
    preprocessing_num_workers: int | None = None,
    seed: int = 42,
):
    """(train, eval or None) packed token-id datasets from the recipe's data options (names match DataArguments):
    the sources as `dataset_name` (short form) or `datasets` (TRL's mixture entries, see `as_mixture`)."""
    sources, ratios = as_mixture(dataset_name, datasets, dataset_config, dataset_ratios)
    common = dict(
        ratios=ratios,
        stopping_strategy=mixture_stopping_strategy,
        seed=seed,
        num_proc=preprocessing_num_workers,
        num_units=num_units,
        units_column=units_column,
        dedup=dedup,
        add_bos_eos=add_bos_eos,
        min_units=min_units,
        max_units=max_units,
        context_length=context_length,
    )
    return load_and_pack(
        lambda split, own_split: load_unit_datasets(sources, split=split, own_split=own_split, **common),
        dataset_split, validation_split, validation_fraction, seed, context_length, packing, preprocessing_num_workers,
        empty=f"{[source['path'] for source in sources]}: no training rows left after filtering "
        f"(min_units={min_units}, max_units={max_units})",
    )  # fmt: skip


def load_and_pack(
    load: Callable[..., object],
    dataset_split: str,
    validation_split: str | None,
    validation_fraction: float,
    seed: int,
    context_length: int,
    packing: str,
    num_proc: int | None = None,
    *,
    empty: str,
):
    """(train, eval or None): `load_train_eval`, then each packed to `context_length` (`pack`). An empty training
    set is a DataError saying `empty`."""
    train, evaluation = load_train_eval(load, dataset_split, validation_split, validation_fraction, seed)
    if len(train) == 0:
        raise DataError(empty)
    train = pack(train, context_length, packing, num_proc=num_proc)
    if evaluation is not None:
        evaluation = pack(evaluation, context_length, packing, num_proc=num_proc)
    return train, evaluation
