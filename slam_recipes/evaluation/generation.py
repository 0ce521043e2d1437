"""Speech continuation: prompts (audio or units) → sampled unit continuations → (with a vocoder) audio.

A prompt is `<S> units` — BOS, no EOS — cut to the paper's 3 seconds; the model continues it with transformers'
`generate` (left-padded batches) until it emits `<S>` (EOS) or reaches `max_new_tokens`. The paper's sampling is
temperature 0.8, top-k 25, 150 new tokens, repetition penalty 1.1.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from slam_recipes.audio.features import SAMPLE_RATE, read_audio
from slam_recipes.errors import ConfigError, DataError
from slam_recipes.units import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID

logger = logging.getLogger(__name__)

GENERATIONS_FILE = "generations.jsonl"
PAPER_SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 25, "max_new_tokens": 150, "repetition_penalty": 1.1}


@dataclass
class Prompt:
    id: str
    units: np.ndarray  # unit indices (not token ids), already cut to the prompt length
    text: str | None = None  # a transcript of the source, when the dataset has one
    audio_path: str | None = None  # the source audio file, when the prompt came from audio
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------------------
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
    """Prompts from audio (a folder/glob of audio files or an HF dataset with an audio column) or from a units
    dataset (`units`, `audio_repr`, or a pair dataset's `positive` column, e.g. the correct sStoryCloze samples),
    the first `num_prompts` of them, each cut to `prompt_seconds`. Returns the prompts and a summary of how they were
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
    column = detect_units_column(dataset, label, column)
    prompts, summary = _unit_prompts(datasets, column, num_units, num_prompts, prompt_seconds, frame_rate)
    return make_ids_unique(prompts), summary


def make_ids_unique(prompts: list[Prompt]) -> list[Prompt]:
    """File names are built from ids: a repeated id gets `-2`, `-3`, ... appended."""
    seen: dict[str, int] = {}
    for prompt in prompts:
        count = seen.get(prompt.id, 0) + 1
        seen[prompt.id] = count
        if count > 1:
            prompt.id = f"{prompt.id}-{count}"
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
        names = _row_names(table, label)
        texts = _row_texts(table, column)
        for i in range(len(offsets) - 1):
            units = values[offsets[i] : offsets[i + 1]]
            if prompt_seconds:
                runs = np.asarray(durations[i]) if durations is not None else None
                units = cut_units(units, runs, round(prompt_seconds * frame_rate))
            prompts.append(Prompt(id=names[i], units=units, text=texts[i] if texts else None))
        if num_prompts is not None and len(prompts) >= num_prompts:
            break
    if not prompts:
        raise DataError(f"{datasets[0][0]}: no prompts")
    cut = "none" if not prompt_seconds else ("by run lengths" if used_durations else "first units (no durations)")
    return prompts, {"kind": "units", "column": column, "cut": cut, "resampled": 0}


def _row_names(table, label: str) -> list[str]:
    for name in ("id", "file", "name"):
        if name in table.column_names:
            values = [str(v) for v in table.column(name).to_pylist()]
            if len(set(values)) == len(values):
                return [_safe_name(v) for v in values]
    stem = _safe_name(os.path.basename(label.split(" [")[0]) or "prompt")
    return [f"{stem}-{i:05d}" for i in range(table.num_rows)]


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


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------
def build_generation_config(
    *,
    do_sample: bool = True,
    temperature: float = 0.8,
    top_k: int = 25,
    top_p: float = 1.0,
    max_new_tokens: int = 150,
    repetition_penalty: float = 1.1,
    **extra,
):
    """A GenerationConfig for the unit vocabulary: stops at `<S>`, pads with `<pad>`, never samples `<pad>`. The
    sampling settings are passed only when sampling (greedy decoding ignores them)."""
    from transformers import GenerationConfig

    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p} if do_sample else {}
    return GenerationConfig(
        do_sample=do_sample,
        max_new_tokens=max_new_tokens,
        repetition_penalty=repetition_penalty,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        suppress_tokens=[PAD_ID],
        **sampling,
        **extra,
    )


def prompt_token_ids(units: np.ndarray) -> list[int]:
    """`<S> units` as token ids: BOS, no EOS, so the model continues the utterance."""
    return [BOS_ID] + (np.asarray(units, dtype=np.int64) + NUM_SPECIAL).tolist()


def generate_continuations(
    model, prompts: Sequence[np.ndarray], generation_config, *, batch_size: int = 32, seed: int | None = 0
) -> list[dict]:
    """Continue each prompt (unit indices). Prompts are sorted by length and left-padded in batches of
    `batch_size`; results come back in prompt order as `{"units": continuation unit indices, "stopped_at_eos":
    bool}`. With `seed`, sampling is reproducible for the same prompts and batch size."""
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    device = model.device
    sequences = [prompt_token_ids(p) for p in prompts]
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    results: list[dict] = [{}] * len(sequences)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in batch)
        ids = torch.full((len(batch), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: every prompt ends at the last column
            ids[row, width - len(sequences[i]) :] = torch.tensor(sequences[i])
            mask[row, width - len(sequences[i]) :] = 1
        with torch.inference_mode():
            output = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=generation_config
            )
        for row, i in enumerate(batch):
            results[i] = split_continuation(output[row, width:].tolist())
    return results


def split_continuation(token_ids: list[int]) -> dict:
    """Generated token ids → unit indices up to (not including) the first `<S>`; padding after it is dropped."""
    stopped = EOS_ID in token_ids
    if stopped:
        token_ids = token_ids[: token_ids.index(EOS_ID)]
    units = [t - NUM_SPECIAL for t in token_ids if t >= NUM_SPECIAL]
    return {"units": units, "stopped_at_eos": stopped}


def check_vocoder(vocoder, num_units: int, where: str) -> None:
    if vocoder.num_units != num_units:
        raise ConfigError(f"{where}: the vocoder has {vocoder.num_units} units but the model has {num_units}")


def continue_prompts(model, prompts: list[Prompt], args, output_dir: str, vocoder=None) -> tuple[list[dict], list]:
    """Generate a continuation of every prompt with `args`' sampling, write `<output_dir>/generations.jsonl` and,
    with a vocoder, `audio/<id>_prompt.wav` and `audio/<id>.wav` (prompt + continuation). Returns the records and
    the prompt + continuation waveforms (empty without a vocoder)."""
    config = build_generation_config(**args.sampling())
    outputs = generate_continuations(
        model, [p.units for p in prompts], config, batch_size=args.generation_batch_size, seed=args.seed
    )
    records = []
    for prompt, out in zip(prompts, outputs, strict=True):
        record = {"id": prompt.id, "prompt": prompt.units.tolist(), "continuation": out["units"]}
        record["stopped_at_eos"] = out["stopped_at_eos"]
        if prompt.text is not None:
            record["prompt_source_text"] = prompt.text
        if prompt.audio_path is not None:
            record["prompt_source_audio"] = prompt.audio_path
        records.append(record)
    waveforms = []
    if vocoder is not None:
        rate = vocoder.config.sampling_rate
        full = vocoder.synthesize([r["prompt"] + r["continuation"] for r in records], args.vocoder_batch_size)
        starts = vocoder.synthesize([r["prompt"] for r in records], args.vocoder_batch_size)
        for record, audio, prompt_audio in zip(records, full, starts, strict=True):
            record["audio"] = os.path.join("audio", f"{record['id']}.wav")
            record["prompt_audio"] = os.path.join("audio", f"{record['id']}_prompt.wav")
            write_wav(os.path.join(output_dir, record["audio"]), audio, rate)
            write_wav(os.path.join(output_dir, record["prompt_audio"]), prompt_audio, rate)
        waveforms = full
    write_generations(os.path.join(output_dir, GENERATIONS_FILE), records)
    return records, waveforms


def write_generations(path: str, records: list[dict]) -> None:
    """One JSON object per prompt, written to a temporary name and renamed (`load_dataset("json", ...)` reads it)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    os.replace(path + ".tmp", path)


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile

    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path + ".tmp", np.asarray(audio, dtype=np.float32), sample_rate, format="WAV")
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------------------------------
# Speech recognition and the generative metrics
# ---------------------------------------------------------------------------------------------------------------------
def load_asr(model_name_or_path: str, *, device: str, dtype: str = "auto", bf16_native_only: bool = True):
    """transformers' speech-recognition pipeline (any Whisper checkpoint name or folder); `dtype` as in
    `slam_recipes.precision.choose_dtype`."""
    from transformers import pipeline

    from slam_recipes.precision import load_dtype

    torch_dtype = load_dtype(dtype, str(device), bf16_native_only, "ASR model")
    try:
        return pipeline("automatic-speech-recognition", model=model_name_or_path, device=device, dtype=torch_dtype)
    except (OSError, ValueError) as err:  # a missing / unreachable / non-ASR or non-causal-LM checkpoint
        from slam_recipes.errors import first_line

        raise ConfigError(f"{model_name_or_path}: cannot load the ASR model: {first_line(err)}") from err


def transcribe(
    asr, waveforms: Sequence[np.ndarray], sample_rate: int, *, language: str | None = "en", batch_size: int = 16
) -> list[str]:
    """Waveforms → transcripts (stripped). Audio is resampled to the ASR model's rate; long audio is read in 30 s
    windows."""
    from scipy.signal import resample_poly

    rate = asr.feature_extractor.sampling_rate
    if sample_rate != rate:
        divisor = np.gcd(sample_rate, rate)
        waveforms = [resample_poly(w, rate // divisor, sample_rate // divisor).astype(np.float32) for w in waveforms]
    kwargs = {"generate_kwargs": {"language": language, "task": "transcribe"}} if language else {}
    chunk = {"chunk_length_s": 30} if any(len(w) > 30 * rate for w in waveforms) else {}
    outputs = asr([np.asarray(w, dtype=np.float32) for w in waveforms], batch_size=batch_size, **kwargs, **chunk)
    return [o["text"].strip() for o in outputs]


def load_text_lm(model_name_or_path: str, *, device: str, dtype: str = "auto", bf16_native_only: bool = True):
    """The perplexity LM and its tokenizer (any HF causal LM); `dtype` as in `slam_recipes.precision.choose_dtype`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slam_recipes.errors import first_line
    from slam_recipes.precision import load_dtype

    torch_dtype = load_dtype(dtype, str(device), bf16_native_only, "perplexity LM")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=torch_dtype)
    except (OSError, ValueError) as err:  # a missing / unreachable / non-ASR or non-causal-LM checkpoint
        raise ConfigError(f"{model_name_or_path}: cannot load the perplexity LM: {first_line(err)}") from err
    return model.to(device).eval(), tokenizer


def generative_metrics(
    transcripts: Sequence[str],
    text_lm,
    tokenizer,
    *,
    batch_size: int = 16,
    n: int = 2,
    auto_bleu_tokenizer: str = "nltk",
) -> dict:
    """GenPPL (see `metrics.perplexity_summary`) and auto-BLEU (`metrics.auto_bleu` of order `n`, words split by
    `auto_bleu_tokenizer`; mean over files, ×100 as the paper reports) of the transcripts; also each file's
    perplexity and auto-BLEU for the listening page. `tokenizer` is the text LM's."""
    import math

    from slam_recipes.configs import check_auto_bleu
    from slam_recipes.evaluation.metrics import auto_bleu, perplexity_summary, text_nll

    check_auto_bleu(n, auto_bleu_tokenizer)  # before the text LM's time is spent
    nll = text_nll(transcripts, text_lm, tokenizer, batch_size=batch_size)
    bleu = [auto_bleu(t, n, auto_bleu_tokenizer) for t in transcripts]
    summary = perplexity_summary(nll)
    summary["auto_bleu"] = 100 * float(np.mean(bleu)) if bleu else float("nan")
    summary["auto_bleu_n"] = n
    summary["auto_bleu_tokenizer"] = auto_bleu_tokenizer
    summary["files"] = [
        {"ppl": math.exp(s / c) if c else None, "auto_bleu": 100 * b} for (s, c), b in zip(nll, bleu, strict=True)
    ]
    return summary


def generative_markdown(result: dict) -> str:
    rows = [
        "| prompts | GenPPL ↓ | auto-BLEU ↓ | mean file PPL | token PPL | empty transcripts | stopped at EOS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {result['num_prompts']} | {result['genppl']:.2f} | {result['auto_bleu']:.2f} | "
        f"{result['mean_file_ppl']:.2f} | {result['token_ppl']:.2f} | {result['empty']} | {result['stopped_at_eos']} |",
    ]
    return "\n".join(rows) + "\n"


def write_listening_page(path: str, records: list[dict], title: str) -> None:
    """An HTML page: per prompt, its audio players (prompt, prompt + continuation), transcript, PPL and auto-BLEU."""
    import html

    def player(src):
        return f'<audio controls preload="none" src="{html.escape(src)}"></audio>' if src else ""

    rows = []
    for r in records:
        ppl = "" if r.get("ppl") is None else f"{r['ppl']:.1f}"
        bleu = "" if r.get("auto_bleu") is None else f"{r['auto_bleu']:.1f}"
        rows.append(
            "<tr>"
            f"<td>{html.escape(r['id'])}</td>"
            f"<td>{player(r.get('prompt_audio'))}</td>"
            f"<td>{player(r.get('audio'))}</td>"
            f"<td>{html.escape(r.get('transcript') or '')}</td>"
            f"<td>{ppl}</td><td>{bleu}</td><td>{len(r['continuation'])}</td>"
            "</tr>"
        )
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border-bottom:1px solid #ddd;padding:4px;vertical-align:top}"
        "</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<table>\n<tr><th>id</th><th>prompt</th><th>prompt + continuation</th>"
        "<th>transcript</th><th>PPL</th><th>auto-BLEU</th><th>new units</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n</body></html>\n"
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(page)
    os.replace(path + ".tmp", path)


GENERATIVE_RESULTS = "generative_eval"  # <output_dir>/generative_eval.json / .md and the folder of continuations
AUTO_BLEU_DEFINITIONS = {  # the `auto_bleu_definition` of generative_eval.json, by auto_bleu_tokenizer
    "nltk": "share of the word {n}-gram positions of a transcript whose n-gram occurs at another position, words "
    "from NLTK's word tokenizer (case and punctuation kept, as slamkit's calc_auto_bleu), mean over files, x100",
    "normalized": "share of the word {n}-gram positions of a transcript whose n-gram occurs at another position, "
    "words lower-cased without punctuation (not the paper's tokenization), mean over files, x100",
}


def evaluate_generation(model, vocoder, asr, text_lm, args, output_dir: str, metadata: dict) -> dict:
    """The paper's generative metrics: continue the prompts, vocode prompt + continuation, transcribe with the ASR
    model (`asr`: a `load_asr` pipeline), and score the transcripts under the text LM (`text_lm`: the (model,
    tokenizer) of `load_text_lm`) — GenPPL and auto-BLEU. Writes generative_eval.json / .md to `output_dir` and the continuations, audio, transcripts and index.html to `<output_dir>/generative_eval/`."""
    import math
    import time

    start = time.perf_counter()
    prompts, how = prompts_from_args(args, str(model.device))
    folder = os.path.join(output_dir, GENERATIVE_RESULTS)
    records, waveforms = continue_prompts(model, prompts, args, folder, vocoder)
    generated = time.perf_counter()
    print(f"{len(records)} continuations of {how['kind']} prompts in {generated - start:.1f} s", flush=True)

    transcripts = transcribe(
        asr, waveforms, vocoder.config.sampling_rate, language=args.asr_language, batch_size=args.asr_batch_size
    )
    metrics = generative_metrics(
        transcripts,
        *text_lm,
        batch_size=args.ppl_batch_size,
        n=args.auto_bleu_n,
        auto_bleu_tokenizer=args.auto_bleu_tokenizer,
    )
    for record, transcript, scores in zip(records, transcripts, metrics.pop("files"), strict=True):
        record.update(transcript=transcript, **scores)
    write_generations(os.path.join(folder, GENERATIONS_FILE), records)
    write_listening_page(os.path.join(folder, "index.html"), records, f"{args.model_name_or_path}: continuations")

    result = {
        **metrics,
        "num_prompts": len(records),
        "stopped_at_eos": sum(r["stopped_at_eos"] for r in records),
        "mean_new_units": float(np.mean([len(r["continuation"]) for r in records])),
        "prompts": {"source": args.prompts, **how},
        "sampling": {**args.sampling(), "seed": args.seed},
        "scored_text": "ASR transcript of the vocoded prompt + continuation",
        "genppl_definition": "exp(mean over files of the mean token NLL of each transcript under the text LM)",
        "auto_bleu_definition": AUTO_BLEU_DEFINITIONS[args.auto_bleu_tokenizer].format(n=args.auto_bleu_n),
        "asr_model": args.asr_model,
        "ppl_model": args.ppl_model,
        "vocoder": args.vocoder_path,
        "seconds": round(time.perf_counter() - start, 1),
    }
    keep = ("model", "revision", "dtype", "device", "date", "versions", "config")
    nan_free = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in result.items()}  # valid JSON
    payload = {**{k: metadata[k] for k in keep if k in metadata}, "results": nan_free}
    markdown = generative_markdown(result)
    for path, text in (
        (os.path.join(output_dir, f"{GENERATIVE_RESULTS}.json"), json.dumps(payload, indent=2) + "\n"),
        (os.path.join(output_dir, f"{GENERATIVE_RESULTS}.md"), markdown),
    ):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print()
    print(markdown, end="")
    print(f"\nGenerative results written to {os.path.join(output_dir, GENERATIVE_RESULTS)}.json; listen: "
          f"{os.path.join(folder, 'index.html')}")  # fmt: skip
    return result
