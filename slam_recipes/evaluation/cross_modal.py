"""Cross-modal StoryCloze for interleaved speech–text LMs (SIMS: Maimon, Hassid, Roth, Adi 2025, arXiv 2504.02398,
Table 3's S→S, S→T, T→S and T→T topic StoryCloze), and the speech-only pair benchmarks on such a model.

A cross-modal pair dataset has, per row, a `prompt` (the story without its ending) and two endings, `positive` and
`negative`, each as units and as text (`prompt_text`, `positive_text`, `negative_text`), plus optional grouping
columns (`id`, `voice`, ...) as the speech-only pair datasets. In a direction such as S→T the prompt is given in
speech and the ending in text, laid out as in interleaved training: a modality marker opens each run and marks each
switch, and a prompt and ending in the same modality share one run:

    S→S  BOS <speech> prompt units  ending units
    S→T  BOS <speech> prompt units  <text> ending text
    T→S  BOS <text> prompt text  <speech> ending units
    T→T  BOS <text> prompt text  " " + ending text

(BOS only when the tokenizer has one.) The markers and runs are placed as in interleaved training; the text is the
dataset's as given, so punctuated texts (the demo's) differ from interleaved training's text runs, which are the
alignment's words. A pair is scored by the log-likelihood of the ending's tokens only, given
everything before them — their mean per token (`mean_nll`) or sum — so the prompt, the BOS and the markers, the same
in both samples, never count. This differs from slamkit's `cross_modal_metric`, which averages over the whole
sequence after BOS: with a shared prompt, a mean over the whole sequence dilutes the endings' difference by the
prompt's length and ranks the two samples by a different quantity when the endings' lengths differ.

The endings' units are those of the ending spoken alone; S→S joins them to the prompt's units, dropping an ending's
first unit when it repeats the prompt's last (as deduplicating the joined audio would).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from slam_recipes.configs import CROSS_MODAL_DIRECTIONS
from slam_recipes.configs import check_cross_modal_directions as check_directions
from slam_recipes.errors import ConfigError, DataError

DIRECTIONS = CROSS_MODAL_DIRECTIONS  # prompt modality 2 ending modality; S = speech (units), T = text
DIRECTION_NAMES = {"S2S": "S→S", "S2T": "S→T", "T2S": "T→S", "T2T": "T→T"}
CROSS_MODAL_COLUMNS = ("prompt", "positive", "negative")  # units; each with a `<column>_text`


@dataclass
class CrossModalBenchmark:
    """One cross-modal pair dataset: per row the prompt's and both endings' units (unit indices, int64) and texts,
    and the grouping columns of the speech-only pair datasets."""

    name: str
    source: str
    units: dict[str, list[np.ndarray]] = field(default_factory=dict)  # prompt / positive / negative
    texts: dict[str, list[str]] = field(default_factory=dict)
    columns: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.units.get("prompt", []))


def load_cross_modal_benchmark(
    name: str, source: str, num_units: int, *, max_pairs: int | None = None
) -> CrossModalBenchmark:
    """Load and validate a cross-modal pair dataset (any form `load_source` reads). Errors name the file, row and
    column: a missing column, an empty text or unit sequence, a unit outside the vocabulary."""
    from slam_recipes.data.sources import check_units_column, read_units
    from slam_recipes.evaluation.likelihood import GROUP_COLUMNS, check_columns_complete, extend_columns, pair_tables

    benchmark = CrossModalBenchmark(name=name, source=source)
    needed = [c for column in CROSS_MODAL_COLUMNS for c in (column, f"{column}_text")]
    for label, dataset, table in pair_tables(source, needed, "cross-modal pair dataset", max_pairs):
        for column in CROSS_MODAL_COLUMNS:
            check_units_column(dataset, column, label)
            values, offsets = read_units(
                table.column(column), num_units=num_units, label=f"{label} column {column!r}", first_row=0
            )
            rows = np.split(values.astype(np.int64), offsets[1:-1])
            texts = table.column(f"{column}_text").to_pylist()
            for i, text in enumerate(texts):  # read_units refused empty unit sequences
                if not (text or "").strip():
                    raise DataError(f"{label} row {i}: the {column} has no text")
            benchmark.units.setdefault(column, []).extend(rows)
            benchmark.texts.setdefault(column, []).extend(texts)
        extend_columns(benchmark.columns, dataset, table, GROUP_COLUMNS)
    check_columns_complete(benchmark.columns, len(benchmark), source)
    return benchmark


def text_encoder(tokenizer) -> Callable[[str], list[int]]:
    """The text tokenizer's ids of a text, without special tokens (BOS and markers are placed by the layout)."""

    def encode_text(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    return encode_text


def cross_modal_prompt_ids(
    prompt: tuple[np.ndarray, str], direction: str, *, vocab, encode_text: Callable[[str], list[int]], bos: int | None
) -> list[int]:
    """Token ids that end where the ending begins: BOS (when there is one), the prompt's marker and the prompt in
    its modality, then the ending's marker when the modality switches (S→T, T→S). `prompt` is (unit indices, text);
    only the one of the prompt's modality is read. What generation continues, and what a scored sample starts with."""
    check_directions([direction])
    units, text = prompt
    ids = [bos] if bos is not None else []
    if direction[0] == "S":
        ids += [vocab.speech_id, *vocab.unit_ids(units).tolist()]
    else:
        ids += [vocab.text_id, *encode_text(text)]
    if direction[0] != direction[2]:
        ids.append(vocab.speech_id if direction[2] == "S" else vocab.text_id)
    return ids


def cross_modal_sequence(
    prompt: tuple[np.ndarray, str],
    ending: tuple[np.ndarray, str],
    direction: str,
    *,
    vocab,
    encode_text: Callable[[str], list[int]],
    bos: int | None,
) -> tuple[list[int], int]:
    """(token ids, index of the ending's first token) of one sample: `prompt` and `ending` are (unit indices, text);
    `direction` one of DIRECTIONS; `vocab` the model's `InterleavedVocab`; `encode_text` the text tokenizer without
    special tokens; `bos` its BOS id or None. The layout is the module docstring's."""
    ids = cross_modal_prompt_ids(prompt, direction, vocab=vocab, encode_text=encode_text, bos=bos)
    (prompt_units, _), (ending_units, ending_text) = prompt, ending
    if direction[2] == "S":
        if direction == "S2S" and len(ending_units) > 1 and ending_units[0] == prompt_units[-1]:
            ending_units = ending_units[1:]  # one run across the join, as deduplicating the joined audio gives
        ending_ids = vocab.unit_ids(ending_units).tolist()
    else:
        ending_ids = encode_text(" " + ending_text if direction == "T2T" else ending_text)
    return ids + ending_ids, len(ids)


def evaluate_cross_modal(
    model,
    tokenizer,
    vocab,
    benchmark: CrossModalBenchmark,
    directions: Sequence[str] = DIRECTIONS,
    *,
    mean_nll: bool = True,
    max_tokens_per_batch: int = 16384,
) -> dict[str, dict]:
    """`{direction: result}` for each direction: every pair's two samples scored by their ending's log-likelihood
    (`sequence_log_likelihoods` from the ending's first token), then aggregated as the speech-only benchmarks
    (`likelihood.aggregate`: ×100, grouped by `id` when there is one). Raises DataError when an ending encodes to
    no token."""
    import time

    from slam_recipes.evaluation.likelihood import aggregate, pair_outcomes, sequence_log_likelihoods

    check_directions(directions)
    encode_text = text_encoder(tokenizer)
    results = {}
    for direction in directions:
        start = time.perf_counter()
        samples, firsts = [], []
        for side in ("positive", "negative"):
            for i in range(len(benchmark)):
                ids, first = cross_modal_sequence(
                    (benchmark.units["prompt"][i], benchmark.texts["prompt"][i]),
                    (benchmark.units[side][i], benchmark.texts[side][i]),
                    direction, vocab=vocab, encode_text=encode_text, bos=tokenizer.bos_token_id,
                )  # fmt: skip
                if first >= len(ids):
                    raise DataError(f"{benchmark.source} row {i}: the {side} ending has no token in {direction}")
                samples.append(np.asarray(ids, dtype=np.int64))
                firsts.append(first)
        scores = sequence_log_likelihoods(
            model, samples, mean=mean_nll, max_tokens_per_batch=max_tokens_per_batch, first_scored=firsts
        )
        seconds = time.perf_counter() - start
        result = aggregate(pair_outcomes(scores[: len(benchmark)], scores[len(benchmark) :]), benchmark.columns)
        result.update(
            source=benchmark.source,
            direction=DIRECTION_NAMES[direction],
            likelihood="mean" if mean_nll else "sum",
            scored="ending tokens only",
            seconds=round(seconds, 3),
            pairs_per_second=round(len(benchmark) / seconds, 1) if seconds > 0 else None,
        )
        results[direction] = result
    return results


def speech_pairs_for_interleaved(benchmark, vocab, bos: int | None, eos: int | None):
    """A speech-only `PairBenchmark` (samples framed `<S> units+2 <S>` for a unit LM) re-framed for an interleaved
    model as its speech-only training rows are: BOS (when the tokenizer has one), the units' token ids, EOS (when it
    has one); no marker. Returns a new PairBenchmark; the grouping columns are shared."""
    from slam_recipes.evaluation.likelihood import PairBenchmark
    from slam_recipes.units import NUM_SPECIAL

    head = [bos] if bos is not None else []
    tail = [eos] if eos is not None else []

    def reframe(sequence: np.ndarray) -> np.ndarray:
        units = np.asarray(sequence[1:-1], dtype=np.int64) - NUM_SPECIAL
        return np.asarray(head + vocab.unit_ids(units).tolist() + tail, dtype=np.int64)

    return PairBenchmark(
        name=benchmark.name,
        source=benchmark.source,
        positive=[reframe(s) for s in benchmark.positive],
        negative=[reframe(s) for s in benchmark.negative],
        columns=benchmark.columns,
    )


def speech_benchmarks_for_interleaved(benchmarks: dict, tokenizer, vocab) -> dict:
    """`{name: PairBenchmark}` of speech-only benchmarks re-framed for an interleaved model with `tokenizer` (its
    BOS and EOS) and `vocab` (`speech_pairs_for_interleaved` on each)."""
    return {
        name: speech_pairs_for_interleaved(benchmark, vocab, tokenizer.bos_token_id, tokenizer.eos_token_id)
        for name, benchmark in benchmarks.items()
    }


# ---------------------------------------------------------------------------------------------------------------------
# Generation across modalities
# ---------------------------------------------------------------------------------------------------------------------
def cross_modal_generation_config(tokenizer, vocab, direction: str, **sampling):
    """A GenerationConfig (`generation.build_generation_config` with `sampling`) that continues in the direction's
    ending modality only: speech samples units or EOS and nothing else; text samples anything but units, markers and
    padding. It stops at the tokenizer's EOS."""
    from slam_recipes.evaluation.generation import build_generation_config

    check_directions([direction])
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if eos is None:
        raise ConfigError("cross-modal generation needs a tokenizer with an EOS token, to stop at")
    units = range(vocab.first_unit_id, vocab.first_unit_id + vocab.num_units)
    if direction[2] == "S":
        allowed = {*units, eos}
        suppressed = [i for i in range(len(tokenizer)) if i not in allowed]
    else:
        suppressed = sorted({*units, vocab.speech_id, vocab.text_id, pad} - {eos})
    return build_generation_config(
        **sampling, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=pad, suppress_tokens=suppressed
    )


def generate_cross_modal(
    model,
    tokenizer,
    vocab,
    prompts: Sequence[tuple[np.ndarray, str]],
    direction: str,
    generation_config,
    *,
    batch_size: int = 32,
    seed: int | None = 0,
) -> list[dict]:
    """Continue each prompt (unit indices, text) in `direction`: the prompt in its modality, laid out as in training
    (`cross_modal_prompt_ids`), then sampled with `generation_config` (`cross_modal_generation_config`). Returns per
    prompt `{"continuation": text (T endings) or unit indices (S endings), "stopped_at_eos": bool}`."""
    from slam_recipes.evaluation.generation import generate_token_ids

    encode_text = text_encoder(tokenizer)
    sequences = [
        cross_modal_prompt_ids(prompt, direction, vocab=vocab, encode_text=encode_text, bos=tokenizer.bos_token_id)
        for prompt in prompts
    ]
    eos = generation_config.eos_token_id
    outputs = generate_token_ids(
        model, sequences, generation_config, pad_id=generation_config.pad_token_id, batch_size=batch_size, seed=seed
    )
    results = []
    for ids in outputs:
        stopped = eos in ids
        ids = ids[: ids.index(eos)] if stopped else ids
        if direction[2] == "S":
            continuation = [i - vocab.first_unit_id for i in ids]
        else:
            continuation = tokenizer.decode(ids, skip_special_tokens=True)
        results.append({"continuation": continuation, "stopped_at_eos": stopped})
    return results


def check_prompt_modality(direction: str | None, how: dict) -> None:
    """A ConfigError when the prompts (`how`: the summary `evaluation.prompts.load_prompts` returns) are not in the
    prompt modality of `direction` (T2S / T2T: a text column; S2S / S2T: units or audio). `direction` None: a
    speech-only model, which continues unit prompts only."""
    text = how["kind"] == "text"
    where = f"prompts_column {how.get('column')!r}"
    if direction is None and text:
        raise ConfigError(f"{where} holds text: only an interleaved model continues text prompts")
    if direction is not None and text != (direction[0] == "T"):
        wanted = "a text column" if direction[0] == "T" else "units or audio"
        raise ConfigError(f"cross_modal_direction {direction} reads {wanted}, but {where} holds {how['kind']}")


def continue_across_modalities(
    model, tokenizer, vocab, prompts, direction: str, args, output_dir: str, vocoder=None
) -> list[dict]:
    """`recipes/generate.py` for an interleaved model: continue every prompt (`evaluation.prompts.Prompt`: units
    and / or text) in `direction` with `args`' sampling, write `<output_dir>/generations.jsonl` (id, direction,
    prompt and continuation: units or text, stopped_at_eos) and, with a vocoder, the speech: `audio/<id>.wav`
    (a unit continuation; after the prompt's for S→S) and `audio/<id>_prompt.wav` (a unit prompt). Raises DataError
    naming the prompt when it lacks its modality (a text prompt needs a text column)."""
    import os

    from slam_recipes.evaluation.generation import GENERATIONS_FILE, vocode_records, write_generations

    check_directions([direction])
    for prompt in prompts:
        if direction[0] == "T" and not (prompt.text or "").strip():
            raise DataError(
                f"prompt {prompt.id}: {direction} needs a text prompt; name a text column in prompts_column"
            )
        if direction[0] == "S" and not len(prompt.units):
            raise DataError(f"prompt {prompt.id}: {direction} needs a speech prompt (units or audio)")
    config = cross_modal_generation_config(tokenizer, vocab, direction, **args.sampling())
    outputs = generate_cross_modal(
        model, tokenizer, vocab, [(p.units, p.text) for p in prompts], direction, config,
        batch_size=args.generation_batch_size, seed=args.seed,
    )  # fmt: skip
    records = []
    for prompt, out in zip(prompts, outputs, strict=True):
        records.append({
            "id": prompt.id, **({"source_id": prompt.source_id} if prompt.source_id is not None else {}),
            "direction": DIRECTION_NAMES[direction],
            "prompt": prompt.units.tolist() if direction[0] == "S" else prompt.text, **out,
        })  # fmt: skip
    if vocoder is not None and direction[2] == "S":
        speech = [(r["prompt"] if direction == "S2S" else []) + r["continuation"] for r in records]
        vocode_records(vocoder, records, speech, output_dir, args.vocoder_batch_size)
    if vocoder is not None and direction[0] == "S":
        prompts_spoken = [r["prompt"] for r in records]
        vocode_records(vocoder, records, prompts_spoken, output_dir, args.vocoder_batch_size, key="prompt_audio")
    write_generations(os.path.join(output_dir, GENERATIONS_FILE), records)
    return records
