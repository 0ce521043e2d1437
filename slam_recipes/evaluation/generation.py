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

import numpy as np
import torch

from slam_recipes.configs import PAPER_SAMPLING
from slam_recipes.errors import ConfigError
from slam_recipes.evaluation.prompts import Prompt
from slam_recipes.files import atomic_path, atomic_write
from slam_recipes.units import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID

logger = logging.getLogger(__name__)

GENERATIONS_FILE = "generations.jsonl"


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------
def build_generation_config(
    *,
    do_sample: bool = PAPER_SAMPLING["do_sample"],
    temperature: float = PAPER_SAMPLING["temperature"],
    top_k: int = PAPER_SAMPLING["top_k"],
    top_p: float = 1.0,
    max_new_tokens: int = PAPER_SAMPLING["max_new_tokens"],
    repetition_penalty: float = PAPER_SAMPLING["repetition_penalty"],
    bos_token_id: int = BOS_ID,
    eos_token_id: int = EOS_ID,
    pad_token_id: int = PAD_ID,
    suppress_tokens: Sequence[int] | None = None,
    **extra,
):
    """A GenerationConfig, by default for the unit vocabulary: stops at `<S>`, pads with `<pad>`, never samples
    `<pad>` (`suppress_tokens` replaces that list). The sampling settings are passed only when sampling (greedy
    decoding ignores them)."""
    from transformers import GenerationConfig

    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p} if do_sample else {}
    return GenerationConfig(
        do_sample=do_sample,
        max_new_tokens=max_new_tokens,
        repetition_penalty=repetition_penalty,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        suppress_tokens=list(suppress_tokens) if suppress_tokens is not None else [PAD_ID],
        **sampling,
        **extra,
    )


def prompt_token_ids(units: np.ndarray) -> list[int]:
    """`<S> units` as token ids: BOS, no EOS, so the model continues the utterance."""
    return [BOS_ID] + (np.asarray(units, dtype=np.int64) + NUM_SPECIAL).tolist()


def generate_token_ids(
    model,
    sequences: Sequence[list[int]],
    generation_config,
    *,
    pad_id: int,
    batch_size: int = 32,
    seed: int | None = 0,
) -> list[list[int]]:
    """Continue each token-id sequence with `model.generate`: sequences sorted by length and left-padded with
    `pad_id` in batches of `batch_size`. Returns the generated ids of each (after its prompt, padding included), in
    input order. With `seed`, sampling is reproducible for the same sequences and batch size."""
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    device = model.device
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    results: list[list[int]] = [[] for _ in sequences]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: every prompt ends at the last column
            ids[row, width - len(sequences[i]) :] = torch.tensor(sequences[i])
            mask[row, width - len(sequences[i]) :] = 1
        with torch.inference_mode():
            output = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=generation_config
            )
        for row, i in enumerate(batch):
            results[i] = output[row, width:].tolist()
    return results


def generate_continuations(
    model, prompts: Sequence[np.ndarray], generation_config, *, batch_size: int = 32, seed: int | None = 0
) -> list[dict]:
    """Continue each prompt (unit indices) as `<S> units` (`generate_token_ids`); results come back in prompt order
    as `{"units": continuation unit indices, "stopped_at_eos": bool}`."""
    outputs = generate_token_ids(
        model, [prompt_token_ids(p) for p in prompts], generation_config, pad_id=PAD_ID, batch_size=batch_size,
        seed=seed,
    )  # fmt: skip
    return [split_continuation(ids) for ids in outputs]


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
        if prompt.source_id is not None:
            record["source_id"] = prompt.source_id
        record["stopped_at_eos"] = out["stopped_at_eos"]
        if prompt.text is not None:
            record["prompt_source_text"] = prompt.text
        if prompt.audio_path is not None:
            record["prompt_source_audio"] = prompt.audio_path
        records.append(record)
    waveforms = []
    if vocoder is not None:
        size = args.vocoder_batch_size
        waveforms = vocode_records(
            vocoder, records, [r["prompt"] + r["continuation"] for r in records], output_dir, size
        )
        vocode_records(vocoder, records, [r["prompt"] for r in records], output_dir, size, key="prompt_audio")
    write_generations(os.path.join(output_dir, GENERATIONS_FILE), records)
    return records, waveforms


def vocode_records(
    vocoder, records: list[dict], units: list[list[int]], output_dir: str, batch_size: int, key: str = "audio"
) -> list:
    """Synthesize each record's `units` (unit indices) with `vocoder`, write `<output_dir>/audio/<id>.wav` (key
    "audio") or `audio/<id>_prompt.wav` (key "prompt_audio"), and store that path in the record under `key`.
    Returns the waveforms."""
    suffix = "_prompt" if key == "prompt_audio" else ""
    waveforms = vocoder.synthesize(units, batch_size)
    for record, audio in zip(records, waveforms, strict=True):
        record[key] = os.path.join("audio", f"{record['id']}{suffix}.wav")
        write_wav(os.path.join(output_dir, record[key]), audio, vocoder.config.sampling_rate)
    return waveforms


def write_generations(path: str, records: list[dict]) -> None:
    """One JSON object per prompt, written to a temporary name and renamed (`load_dataset("json", ...)` reads it)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path) as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def check_generations_folder(output_dir: str, overwrite: bool) -> None:
    """A folder that holds generations already is written into again only with `overwrite` (the new run's
    `remove_stale_outputs` then removes what it does not replace); else a ConfigError, before anything runs."""
    if os.path.isfile(os.path.join(output_dir, GENERATIONS_FILE)) and not overwrite:
        raise ConfigError(
            f"{output_dir}: holds generations already; choose another output_dir or pass overwrite_output_dir"
        )


def remove_stale_outputs(output_dir: str, records: list[dict], page_written: bool) -> None:
    """After a run into an output_dir that held an earlier one (`overwrite_output_dir`): remove the `audio/*.wav`
    files no record names, and `index.html` when this run wrote none, so the folder describes this run only."""
    keep = {os.path.normpath(r[key]) for r in records for key in ("audio", "prompt_audio") if r.get(key)}
    folder = os.path.join(output_dir, "audio")
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith(".wav") and os.path.join("audio", name) not in keep:
                os.remove(os.path.join(folder, name))
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
    page = os.path.join(output_dir, "index.html")
    if not page_written and os.path.isfile(page):
        os.remove(page)


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as temporary:
        soundfile.write(temporary, np.asarray(audio, dtype=np.float32), sample_rate, format="WAV")


# ---------------------------------------------------------------------------------------------------------------------
# Speech recognition and the generative metrics
# ---------------------------------------------------------------------------------------------------------------------


def write_listening_page(path: str, records: list[dict], title: str) -> None:
    """An HTML page: per prompt, its audio players (prompt, prompt + continuation), transcript, PPL and auto-BLEU
    (columns shown when the records have them: the generative metrics) and the continuation's length. Across
    modalities (`continue_across_modalities` records), a written prompt or continuation is shown as its text beside
    the audio of the spoken side, and each row names its direction."""
    import html

    def player(src):
        return f'<audio controls preload="none" src="{html.escape(src)}"></audio>' if src else ""

    def written(value):
        return f"<p>{html.escape(value)}</p>" if isinstance(value, str) else ""

    directions = any("direction" in r for r in records)
    spoken_after_prompt = any(r.get("direction") == "S→S" for r in records)  # its audio holds the prompt too
    continuation_header = f"<th>continuation{' (S→S: after its prompt)' if spoken_after_prompt else ''}</th>"
    scored = any(r.get(key) is not None for r in records for key in ("transcript", "ppl", "auto_bleu"))
    rows = []
    for r in records:
        ppl = "" if r.get("ppl") is None else f"{r['ppl']:.1f}"
        bleu = "" if r.get("auto_bleu") is None else f"{r['auto_bleu']:.1f}"
        continuation = r["continuation"]
        length = f"{len(continuation)} characters" if isinstance(continuation, str) else f"{len(continuation)} units"
        rows.append(
            "<tr>"
            f"<td>{html.escape(r['id'])}</td>"
            + (f"<td>{html.escape(r.get('direction', ''))}</td>" if directions else "")
            + f"<td>{player(r.get('prompt_audio'))}{written(r.get('prompt'))}</td>"
            f"<td>{player(r.get('audio'))}{written(continuation)}</td>"
            + (f"<td>{html.escape(r.get('transcript') or '')}</td><td>{ppl}</td><td>{bleu}</td>" if scored else "")
            + f"<td>{length}</td></tr>"
        )
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border-bottom:1px solid #ddd;padding:4px;vertical-align:top}"
        "</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<table>\n<tr><th>id</th>"
        + ("<th>direction</th>" if directions else "")
        + "<th>prompt</th>"
        + (continuation_header if directions else "<th>prompt + continuation</th>")
        + ("<th>transcript</th><th>PPL</th><th>auto-BLEU</th>" if scored else "")
        + "<th>length</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n</body></html>\n"
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path) as f:
        f.write(page)
