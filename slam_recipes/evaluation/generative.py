"""The generative metrics of the paper's Table 3: continuations are vocoded, transcribed by an ASR model and scored by
a text LM (GenPPL) and for repetition (auto-BLEU); written as generative_eval.json and .md with the continuations."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from slam_recipes.errors import ConfigError
from slam_recipes.evaluation.generation import (
    GENERATIONS_FILE,
    continue_prompts,
    write_generations,
    write_listening_page,
)
from slam_recipes.evaluation.prompts import prompts_from_args
from slam_recipes.files import atomic_write

GENERATIVE_RESULTS = "generative_eval"  # <output_dir>/generative_eval.json / .md and the folder of continuations
AUTO_BLEU_DEFINITIONS = {  # the `auto_bleu_definition` of generative_eval.json, by auto_bleu_tokenizer
    "nltk": "share of the word {n}-gram positions of a transcript whose n-gram occurs at another position, words "
    "from NLTK's word tokenizer (case and punctuation kept, as slamkit's calc_auto_bleu), mean over files, x100",
    "normalized": "share of the word {n}-gram positions of a transcript whose n-gram occurs at another position, "
    "words lower-cased without punctuation (not the paper's tokenization), mean over files, x100",
}


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
        with atomic_write(path) as f:
            f.write(text)
    print()
    print(markdown, end="")
    print(f"\nGenerative results written to {os.path.join(output_dir, GENERATIVE_RESULTS)}.json; listen: "
          f"{os.path.join(folder, 'index.html')}")  # fmt: skip
    return result
