"""Pairwise likelihood metrics: sWUGGY, sBLIMP, Spoken/Topic StoryCloze and SALMon over pair datasets of units.

A pair dataset has a `positive` and a `negative` unit sequence per row, plus optional grouping columns (`id`,
`voice`, `type`, `subtype`, `frequency`, `part`). Each sample is framed as in pretraining, `<S> units <S>`, and
scored by the model's log-likelihood of every token after the first (units and the closing `<S>`; padding never
counts) — the mean per token (`mean_nll`, slamkit's default) or the sum. A pair counts 1 when the positive scores
higher, 0.5 on a tie, 0 otherwise.

Aggregation: with an `id` column, pairs are first averaged within their group (`type`, `subtype`, `id` — e.g. the
voices of one ZeroSpeech 2021 item), then over groups, as the official ZeroSpeech 2021 evaluation does; without
one, the metric is the mean over pairs. Reported ×100, like the paper's Table 2.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from slam_recipes.configs import parse_benchmark_specs
from slam_recipes.errors import DataError
from slam_recipes.files import atomic_write
from slam_recipes.units import PAD_ID, frame_units

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("positive", "negative")
GROUP_COLUMNS = ("id", "voice", "type", "subtype", "frequency", "part")
TEXT_COLUMNS = ("positive_text", "negative_text", "positive_transcription", "negative_transcription")  # speed/sBLIMP
GROUP_KEY = ("type", "subtype", "id")  # ZeroSpeech 2021: sBLIMP groups by (type, subtype, id), sWUGGY by id
BREAKDOWNS = ("part", "type", "frequency")
# ZeroSpeech 2021 lexical frequency bands: [0, 1) oov, [1, 5) "1-5", [5, 20) "6-20", [20, 100) "21-100", [100, inf)
FREQUENCY_BANDS = ((0, 1, "oov"), (1, 5, "1-5"), (5, 20, "6-20"), (20, 100, "21-100"), (100, math.inf, ">100"))
RESULTS_NAME = "likelihood_eval"  # <output_dir>/likelihood_eval.json and .md


@dataclass
class PairBenchmark:
    """One pair dataset, validated and framed: token ids of every positive and negative, and its grouping columns."""

    name: str
    source: str
    positive: list[np.ndarray]
    negative: list[np.ndarray]
    columns: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.positive)


# ---------------------------------------------------------------------------------------------------------------------
# Loading pair datasets
# ---------------------------------------------------------------------------------------------------------------------
def frame(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Unit rows → token-id rows `<S> units+2 <S>` (int64), framed by `units.frame_units` as in training."""
    ids, framed = frame_units(np.asarray(values), np.asarray(offsets), dtype=np.int64)
    return np.split(ids, framed[1:-1])


def pair_tables(source: str, needed: Sequence[str], kind: str, max_pairs: int | None = None):
    """Each file of a pair dataset `source` (any form `load_source` reads) as (label, dataset, its Arrow table):
    checked to hold the `needed` columns (a DataError naming the file and the `kind` of dataset), and cut so that at
    most `max_pairs` rows are read in all."""
    from slam_recipes.data.sources import load_source

    read = 0
    for label, dataset in load_source(source, split="train"):
        missing = [c for c in needed if c not in dataset.column_names]
        if missing:
            raise DataError(f"{label}: missing column(s) {missing} of a {kind} (found {list(dataset.column_names)})")
        if max_pairs is not None:
            if read >= max_pairs:
                return
            dataset = dataset.select(range(min(len(dataset), max_pairs - read)))
        read += len(dataset)
        yield label, dataset, dataset.with_format("arrow")[:]


def extend_columns(columns: dict[str, list], dataset, table, names: Sequence[str]) -> None:
    """Append each of `names` that the file has to `columns` (its values, in row order)."""
    for column in names:
        if column in dataset.column_names:
            columns.setdefault(column, []).extend(table.column(column).to_pylist())


def check_columns_complete(columns: dict[str, list], num_pairs: int, source: str) -> None:
    """A DataError when `source` has no pairs, or a grouping column that some of its files lack."""
    incomplete = [c for c, values in columns.items() if len(values) != num_pairs]
    if incomplete:
        raise DataError(f"{source}: column(s) {incomplete} missing from some of its files")
    if num_pairs == 0:
        raise DataError(f"{source}: no pairs")


def load_pair_benchmark(
    name: str, source: str, num_units: int, *, max_pairs: int | None = None, dedup: bool = False
) -> PairBenchmark:
    """Load and validate one pair dataset (any form `load_source` reads: a `save_to_disk` folder, jsonl/parquet
    files, a Hub dataset). Errors name the file and row."""
    from slam_recipes.data.sources import check_units_column, read_units

    benchmark = PairBenchmark(name=name, source=source, positive=[], negative=[])
    for label, dataset, table in pair_tables(source, PAIR_COLUMNS, "pair dataset", max_pairs):
        _check_pairs_complete(table, label)
        for column in PAIR_COLUMNS:
            check_units_column(dataset, column, label)
            values, offsets = read_units(
                table.column(column), num_units=num_units, label=f"{label} column {column!r}", first_row=0, dedup=dedup
            )
            getattr(benchmark, column).extend(frame(values, offsets))
        extend_columns(benchmark.columns, dataset, table, GROUP_COLUMNS + TEXT_COLUMNS)
    check_columns_complete(benchmark.columns, len(benchmark), source)
    if "frequency" in benchmark.columns:
        benchmark.columns["frequency"] = [
            _frequency(v, source, i) for i, v in enumerate(benchmark.columns["frequency"])
        ]
    return benchmark


def _check_pairs_complete(table, label: str) -> None:
    """Each row must hold both a positive and a negative: a null on one side means unequal positives/negatives."""
    for column, other in (PAIR_COLUMNS, PAIR_COLUMNS[::-1]):
        nulls = table.column(column).is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            row = int(np.flatnonzero(nulls)[0])
            raise DataError(f"{label} row {row}: a {other} without a {column} (unequal positives/negatives)")


def _frequency(value, source: str, row: int) -> int:
    try:
        return int(value) if value is not None and value != "" else 0
    except (TypeError, ValueError) as err:
        raise DataError(f"{source} row {row}: frequency {value!r} is not an integer") from err


def load_benchmarks(
    specs: Sequence[str] | None, num_units: int, *, max_pairs: int | None = None
) -> dict[str, PairBenchmark]:
    """Every `name=path` of a recipe's `benchmarks`, loaded and validated up front (before any model time is spent)."""
    return {
        name: load_pair_benchmark(name, path, num_units, max_pairs=max_pairs)
        for name, path in parse_benchmark_specs(specs).items()
    }


# ---------------------------------------------------------------------------------------------------------------------
# Scoring: one forward pass per distinct sample, batched by length under a token budget
# ---------------------------------------------------------------------------------------------------------------------
def padded_length_batches(lengths: np.ndarray, max_tokens_per_batch: int) -> list[np.ndarray]:
    """Indices sorted by decreasing length, cut into batches whose padded size (rows × longest) stays within the
    budget (a sample longer than the budget gets a batch of its own). The longest batch comes first, so an
    out-of-memory shows at once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < order.size:
        longest = int(lengths[order[start]])
        rows = max(1, max_tokens_per_batch // max(longest, 1))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def sequence_log_likelihoods(
    model,
    sequences: Sequence[np.ndarray],
    *,
    mean: bool = True,
    max_tokens_per_batch: int = 16384,
    accelerator=None,
    first_scored: Sequence[int] | None = None,
) -> np.ndarray:
    """Log-likelihood of each token-id sequence under `model`: the sum over every token after the first of
    log p(token | tokens before it), or that sum divided by the number of such tokens (`mean`). With `first_scored`,
    sequence i is scored from its token `first_scored[i]` (≥ 1) on: the tokens before it are context only (a
    cross-modal ending given its prompt). Right-padded batches with an attention mask; padding is never scored.
    With an `accelerator`, batches are shared out across processes and the scores gathered (every process must
    call this)."""
    import torch

    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if lengths.size and lengths.min() < 2:
        raise DataError("a sample needs at least two tokens to be scored")
    firsts = np.ones(len(sequences), dtype=np.int64) if first_scored is None else np.asarray(first_scored, np.int64)
    if firsts.shape != lengths.shape or (firsts.size and ((firsts < 1).any() or (firsts >= lengths).any())):
        raise ValueError("first_scored needs one index per sequence, at least 1 and before its end")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    device = next(model.parameters()).device
    scores = np.zeros(len(sequences), dtype=np.float64)
    mine: list[tuple[np.ndarray, np.ndarray]] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for number, batch in enumerate(padded_length_batches(lengths, max_tokens_per_batch)):
                if number % world != rank:
                    continue
                width = int(lengths[batch].max())
                input_ids = torch.full((batch.size, width), PAD_ID, dtype=torch.long)
                attention_mask = torch.zeros((batch.size, width), dtype=torch.long)
                for row, index in enumerate(batch):
                    input_ids[row, : lengths[index]] = torch.from_numpy(np.asarray(sequences[index], dtype=np.int64))
                    attention_mask[row, : lengths[index]] = 1
                input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
                logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
                token_nll = torch.nn.functional.cross_entropy(
                    logits[:, :-1].float().transpose(1, 2), input_ids[:, 1:], reduction="none"
                )
                positions = torch.arange(1, width, device=device)  # of the predicted tokens
                first = torch.from_numpy(firsts[batch]).to(device)
                scored = (attention_mask[:, 1:].bool() & (positions[None, :] >= first[:, None])).to(token_nll.dtype)
                total = -(token_nll * scored).sum(dim=1)
                value = total / scored.sum(dim=1) if mean else total
                mine.append((batch, value.double().cpu().numpy()))
    finally:
        model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        mine = gather_object(mine)
    for batch, value in mine:
        scores[batch] = value
    return scores


def score_pairs(
    model,
    benchmark: PairBenchmark,
    *,
    mean: bool = True,
    max_tokens_per_batch: int = 16384,
    accelerator=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(positive scores, negative scores). A sample shared by several pairs is scored once."""
    distinct: dict[bytes, int] = {}
    index = []
    samples = []
    for sequence in benchmark.positive + benchmark.negative:
        key = sequence.tobytes()
        if key not in distinct:
            distinct[key] = len(samples)
            samples.append(sequence)
        index.append(distinct[key])
    scores = sequence_log_likelihoods(
        model, samples, mean=mean, max_tokens_per_batch=max_tokens_per_batch, accelerator=accelerator
    )[np.asarray(index, dtype=np.int64)]
    return scores[: len(benchmark)], scores[len(benchmark) :]


def pair_outcomes(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """1 where the positive scores higher, 0.5 on a tie, 0 otherwise."""
    positive, negative = np.asarray(positive), np.asarray(negative)
    return (positive > negative).astype(np.float64) + 0.5 * (positive == negative)


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------------------------------
def frequency_band(frequency: int) -> str:
    for low, high, label in FREQUENCY_BANDS:
        if low <= frequency < high:
            return label
    raise DataError(f"frequency {frequency} is negative")


def aggregate(outcomes: np.ndarray, columns: dict[str, list] | None = None) -> dict:
    """Metric (×100) from per-pair outcomes: the mean over groups of the per-group mean when there is an `id`
    column (ZeroSpeech 2021), else the mean over pairs; plus breakdowns by `part`, `type` and frequency band, and,
    with frequencies, the in-vocabulary score (ZeroSpeech 2021 `lexical_invocab`: groups of frequency ≥ 1)."""
    columns = columns or {}
    outcomes = np.asarray(outcomes, dtype=np.float64)
    key_columns = [c for c in GROUP_KEY if c in columns] if "id" in columns else []
    if key_columns:
        keys = list(zip(*(columns[c] for c in key_columns), strict=True))
        group_of: dict[tuple, int] = {}
        group_index = np.fromiter((group_of.setdefault(k, len(group_of)) for k in keys), np.int64, len(keys))
        num_groups = len(group_of)
        group_scores = np.bincount(group_index, outcomes, num_groups) / np.bincount(group_index, None, num_groups)
        first_row = np.unique(group_index, return_index=True)[1]  # groups are numbered in order of appearance
        aggregation = f"mean over the pairs of each ({', '.join(key_columns)}) group, then over groups"
    else:
        group_scores, first_row, num_groups = outcomes, np.arange(outcomes.size), outcomes.size
        aggregation = "mean over pairs"
    result = {
        "score": 100.0 * float(group_scores.mean()),
        "num_pairs": int(outcomes.size),
        "num_groups": int(num_groups),
        "aggregation": aggregation,
    }
    breakdown = {}
    for column in BREAKDOWNS:
        if column not in columns:
            continue
        labels = [columns[column][row] for row in first_row]
        if column == "frequency":
            labels = [frequency_band(int(v)) for v in labels]
            order = [band for _, _, band in FREQUENCY_BANDS]
        else:
            labels = [str(v) for v in labels]
            order = sorted(set(labels))
        labels_array = np.asarray(labels, dtype=object)
        breakdown[column] = {
            label: {"score": 100.0 * float(group_scores[mask].mean()), "num_groups": int(mask.sum())}
            for label in order
            if (mask := labels_array == label).any()
        }
        if column == "frequency":
            in_vocab = labels_array != "oov"
            if in_vocab.any():
                result["score_in_vocab"] = 100.0 * float(group_scores[in_vocab].mean())
    if breakdown:
        result["breakdown"] = breakdown
    return result


def evaluate_benchmark(
    model,
    benchmark: PairBenchmark,
    *,
    mean_nll: bool = True,
    max_tokens_per_batch: int = 16384,
    accelerator=None,
) -> dict:
    """Score every pair of `benchmark` and aggregate; the result records the likelihood used and the speed."""
    start = time.perf_counter()
    positive, negative = score_pairs(
        model, benchmark, mean=mean_nll, max_tokens_per_batch=max_tokens_per_batch, accelerator=accelerator
    )
    seconds = time.perf_counter() - start
    result = aggregate(pair_outcomes(positive, negative), benchmark.columns)
    result.update(
        source=benchmark.source,
        likelihood="mean" if mean_nll else "sum",
        seconds=round(seconds, 3),
        pairs_per_second=round(len(benchmark) / seconds, 1) if seconds > 0 else None,
    )
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------------
def results_markdown(results: dict[str, dict]) -> str:
    """The results as markdown: one row per benchmark, then one table per breakdown."""
    lines = [
        "| benchmark | score | pairs | groups | likelihood | aggregation |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, r in results.items():
        score = f"{r['score']:.2f}"
        if "score_in_vocab" in r:
            score += f" (in-vocab {r['score_in_vocab']:.2f})"
        lines.append(
            f"| {name} | {score} | {r['num_pairs']} | {r['num_groups']} | {r['likelihood']} | {r['aggregation']} |"
        )
    for name, r in results.items():
        for column, rows in r.get("breakdown", {}).items():
            lines += ["", f"{name} by {column} ({r['likelihood']} likelihood):", "", f"| {column} | score | groups |"]
            lines.append("|---|---:|---:|")
            lines += [f"| {label} | {v['score']:.2f} | {v['num_groups']} |" for label, v in rows.items()]
    return "\n".join(lines) + "\n"


def write_results(output_dir: str, results: dict[str, dict], metadata: dict) -> tuple[str, str]:
    """Write `likelihood_eval.json` (metadata + results) and `likelihood_eval.md`; return their paths. Each file is
    written to a temporary name first, so an interrupted run leaves the previous results intact. The files replace
    an earlier run's; a warning names each benchmark of that run that this one does not score again (its score is
    gone), since results of two runs are not merged: they may be of two models or two settings."""
    import json

    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, f"{RESULTS_NAME}.json")
    md_path = os.path.join(output_dir, f"{RESULTS_NAME}.md")
    dropped = sorted(set(_earlier_results(json_path)) - set(results))
    if dropped:
        logger.warning(
            "%s: replacing an earlier run's results; its %s not scored in this run (score them in one run to keep "
            "them together, or give another output_dir)",
            json_path,
            ", ".join(dropped) + (" is" if len(dropped) == 1 else " are"),
        )
    for path, text in (
        (json_path, json.dumps({**metadata, "results": results}, indent=2) + "\n"),
        (md_path, results_markdown(results)),
    ):
        with atomic_write(path) as f:
            f.write(text)
    return json_path, md_path


def _earlier_results(json_path: str) -> dict:
    """The `results` of an earlier `likelihood_eval.json`, or {} where there is none (or it cannot be read)."""
    import json

    try:
        with open(json_path) as f:
            results = json.load(f).get("results", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return results if isinstance(results, dict) else {}
