"""The sections of `make bench` (`bench/run.py`), each a function that measures one stage on this machine and returns
its figures: unit-dataset preparation, float32 against bf16, the demo recipe's training tokens/s, demo DPO pairs/s,
the pairwise likelihood evaluation, audio → units, and the memory of long recordings. Training throughput variant by
variant is `bench/throughput.py`.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_synthetic_units(folder: str, num_utterances: int, seed: int = 0) -> dict[str, str]:
    """The same utterances in three input forms: `units` jsonl, slamkit `audio_repr` jsonl, parquet."""
    import numpy as np
    from datasets import Dataset

    from slam_recipes.units import units_to_string

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=6.2, sigma=0.6, size=num_utterances), 8, 4000).astype(int)  # mean ≈ 590
    utterances = [rng.integers(0, 500, size=n).tolist() for n in lengths]
    paths = {
        "units jsonl": os.path.join(folder, "units.jsonl"),
        "audio_repr jsonl": os.path.join(folder, "tokens.jsonl"),
    }
    with open(paths["units jsonl"], "w") as f:
        f.writelines(json.dumps({"units": u}) + "\n" for u in utterances)
    with open(paths["audio_repr jsonl"], "w") as f:
        f.writelines(json.dumps({"audio_repr": units_to_string(u)}) + "\n" for u in utterances)
    paths["parquet"] = os.path.join(folder, "units.parquet")
    Dataset.from_dict({"units": utterances}).to_parquet(paths["parquet"])
    return paths


STRING_BASELINE = "audio_repr jsonl → WordLevel tokenizer (slamkit-style)"


def bench_preparation(num_utterances: int, context_length: int, repeats: int = 3) -> dict:
    """Load, then units → token ids, for each input form (this package's vectorised path), against the string
    tokeniser path on the same utterances (checked to give the same ids); then padding-free packing. Each stage's
    time is the fastest of `repeats` runs."""
    import datasets

    from bench.throughput import string_tokenizer_ids
    from slam_recipes.data.packing import pack
    from slam_recipes.data.sources import count_tokens, load_source, to_token_ids

    no_chunking = 1 << 30  # the string path does not chunk: compare whole utterances
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_synthetic_units(folder, num_utterances)
        paths[STRING_BASELINE] = paths["audio_repr jsonl"]
        for name, path in paths.items():
            load_s, ids_s = [], []
            for attempt in range(repeats):  # the fastest of `repeats` cold runs (a new cache folder each)
                datasets.config.HF_DATASETS_CACHE = os.path.join(folder, f"cache-{len(rows)}-{attempt}")
                start = time.perf_counter()
                [(label, dataset)] = load_source(path)
                loaded = time.perf_counter()
                if name == STRING_BASELINE:
                    ids = string_tokenizer_ids(dataset, 500)
                else:
                    ids = to_token_ids(dataset, label, num_units=500, context_length=no_chunking)
                load_s.append(loaded - start)
                ids_s.append(time.perf_counter() - loaded)
            tokens = count_tokens(ids)
            outputs[name] = ids
            rows.append(
                {
                    "input": name if name == STRING_BASELINE else f"{name} → unit path",
                    "tokens": tokens,
                    "load_s": round(min(load_s), 3),
                    "ids_s": round(min(ids_s), 3),
                    "ids_tokens_per_s": round(tokens / min(ids_s)),
                    "total_tokens_per_s": round(tokens / (min(load_s) + min(ids_s))),
                }
            )
        baseline = outputs[STRING_BASELINE]
        checked = min(len(baseline), 1000)
        if baseline[:checked]["input_ids"] != outputs["parquet"][:checked]["input_ids"]:
            raise RuntimeError("the string tokeniser path and the unit path disagree on token ids")
        start = time.perf_counter()
        packed = pack(outputs["parquet"], context_length)
        packing = {"rows": len(packed), "seconds": round(time.perf_counter() - start, 3)}
    by_input = {row["input"]: row for row in rows}
    string, parquet = by_input[STRING_BASELINE], by_input["parquet → unit path"]
    return {
        "rows": rows,
        "checked_rows": checked,
        "packing": packing,
        "ids_speedup_parquet_vs_string": round(parquet["ids_tokens_per_s"] / string["ids_tokens_per_s"], 1),
        "total_speedup_parquet_vs_string": round(parquet["total_tokens_per_s"] / string["total_tokens_per_s"], 1),
    }


def bench_training(steps: int, output_dir: str) -> dict:
    """The demo recipe through the real script; tokens/s as the throughput bench takes it (median of the logged
    intervals after the first)."""
    from slam_recipes.training.records import summarise_logs

    run_dir = os.path.join(output_dir, "demo-train")
    command = [
        sys.executable, os.path.join(REPO, "recipes", "pretrain.py"), "--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"),
        "--output_dir", run_dir, "--max_steps", str(steps), "--logging_steps", "10", "--eval_strategy", "no",
        "--save_strategy", "no", "--disable_tqdm", "true", "--overwrite_output_dir", "true",
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    with open(os.path.join(run_dir, "trainer_state.json")) as f:
        logs = summarise_logs(json.load(f)["log_history"])
    return {"recipe": "recipes/demo/pretrain.yaml", "steps": steps, "tokens_per_s": logs["tokens_per_s"]}


def bench_precision(steps: int, output_dir: str) -> dict:
    """float32 against bf16 on this machine: a 1024³ matmul (best of 5 windows each), and the demo recipe's training
    tokens/s through the real script in float32 (`--bf16 false`) and in bf16 autocast forced where it is not native
    (`--bf16_native_only false`)."""
    from bench.throughput import measured_matmul_tflops
    from slam_recipes.training.records import summarise_logs

    result = {}
    for dtype in ("float32", "bfloat16"):
        tflops = measured_matmul_tflops(size=1024, dtype=dtype)
        result[f"matmul_1024_{dtype}_tflops"] = float(f"{tflops:.4g}")
        result[f"matmul_1024_{dtype}_s"] = float(f"{2 * 1024**3 / (tflops * 1e12):.4g}")
    result["matmul_bf16_vs_float32"] = float(
        f"{result['matmul_1024_float32_s'] / result['matmul_1024_bfloat16_s']:.3g}"
    )
    for name, flags in (("float32", ["--bf16", "false"]), ("bf16", ["--bf16", "true", "--bf16_native_only", "false"])):
        run_dir = os.path.join(output_dir, f"demo-precision-{name}")
        command = [
            sys.executable, os.path.join(REPO, "recipes", "pretrain.py"), "--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"),
            "--output_dir", run_dir, "--max_steps", str(steps), "--logging_steps", "2", "--eval_strategy", "no",
            "--save_strategy", "no", "--disable_tqdm", "true", "--overwrite_output_dir", "true", *flags,
        ]  # fmt: skip
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        with open(os.path.join(run_dir, "trainer_state.json")) as f:
            result[f"demo_{name}_tokens_per_s"] = summarise_logs(json.load(f)["log_history"])["tokens_per_s"]
    result["demo_bf16_vs_float32"] = round(result["demo_bf16_tokens_per_s"] / result["demo_float32_tokens_per_s"], 3)
    result["steps"] = steps
    return result


def bench_dpo(model_dir: str, steps: int, output_dir: str) -> list[dict]:
    """The demo DPO recipe from the bench's demo model, with and without precomputed reference log-probs.
    (Padding-free DPO batches: TRL 1.16's DPOTrainer turns `padding_free` off with a warning, so the real-token
    fraction shows what padding costs instead.)"""
    from slam_recipes.training.records import summarise_logs

    rows = []
    for precompute in (False, True):
        run_dir = os.path.join(output_dir, f"demo-dpo-precompute-{precompute}")
        command = [
            sys.executable, os.path.join(REPO, "recipes", "dpo.py"), "--config", os.path.join(REPO, "recipes/demo/dpo.yaml"),
            "--model_name_or_path", model_dir, "--output_dir", run_dir, "--max_steps", str(steps),
            "--eval_strategy", "no", "--disable_tqdm", "true", "--precompute_ref_log_probs", str(precompute).lower(),
            "--overwrite_output_dir", "true",
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        wall = time.perf_counter() - start
        with open(os.path.join(run_dir, "train_results.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(run_dir, "trainer_state.json")) as f:
            logs = summarise_logs(json.load(f)["log_history"])
        rows.append(
            {
                "precompute_ref_log_probs": precompute,
                "steps": steps,
                "train_pairs_per_s": round(metrics["train_samples_per_second"], 2),
                "real_token_fraction": logs["real_token_fraction"],
                "data_wait_fraction": logs["data_wait_fraction"],
                "script_seconds": round(wall, 1),
            }
        )
    return rows


def bench_evaluation(model_dir: str) -> list[dict]:
    """Pairs/s of the likelihood metrics on the demo benchmarks: batched by length (the recipe's way) against one
    sample per forward pass."""
    from slam_recipes.evaluation.likelihood import evaluate_benchmark, load_benchmarks
    from slam_recipes.modeling.unit_lm import load_speech_lm

    model = load_speech_lm(model_dir, 500)
    demo = os.path.join(REPO, "data", "demo", "eval")
    benchmarks = load_benchmarks([f"{name}={demo}/{name}.parquet" for name in ("swuggy", "sblimp", "tsc")], 500)
    rows = []
    for name, benchmark in benchmarks.items():
        row = {"benchmark": name, "pairs": len(benchmark)}
        for label, budget in (("batched", 16384), ("one_sample_per_forward", 1)):
            result = evaluate_benchmark(model, benchmark, max_tokens_per_batch=budget)
            row[f"{label}_pairs_per_s"] = result["pairs_per_second"]
        rows.append(row)
    return rows


def bench_tokenization(seconds_of_audio: float = 300.0) -> dict:
    """Audio → units speed on this machine: audio-seconds per second for the MFCC backend and a tiny random HuBERT
    (base strides), and the nearest-centroid assignment against scikit-learn's `KMeans.predict` on the same
    features (500 centroids of dimension 768, as mHuBERT layer 11 + k-means 500)."""
    import numpy as np
    import torch
    from transformers import HubertConfig, HubertModel

    from slam_recipes.audio.features import HubertFeatures, MFCCFeatures
    from slam_recipes.audio.kmeans import NearestCentroid

    rng = np.random.default_rng(0)
    waveforms = [(rng.standard_normal(16000 * 10) * 0.1).astype(np.float32) for _ in range(int(seconds_of_audio / 10))]
    result = {"audio_seconds": seconds_of_audio}
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        config = HubertConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                              conv_dim=(64,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4)  # fmt: skip
        HubertModel(config).save_pretrained(folder)
        for name, extractor in (("mfcc", MFCCFeatures()), ("tiny_hubert", HubertFeatures(folder, layer=4))):
            start = time.perf_counter()
            extractor(waveforms)
            result[f"{name}_audio_s_per_s"] = round(seconds_of_audio / (time.perf_counter() - start), 1)

    from sklearn.cluster import KMeans

    features = rng.standard_normal((100_000, 768)).astype(np.float32)
    kmeans = KMeans(n_clusters=500, n_init=1, max_iter=1, random_state=0).fit(features[:5000])
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the features' own device in the recipe
    assigner = NearestCentroid(torch.from_numpy(kmeans.cluster_centers_.astype(np.float32)), device)
    frames = torch.from_numpy(features).to(device)
    assigner(frames[:1000])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    ours = assigner(frames).cpu().numpy()
    result["torch_assign_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    theirs = kmeans.predict(features)
    result["sklearn_predict_seconds"] = round(time.perf_counter() - start, 3)
    result["assign_speedup"] = round(result["sklearn_predict_seconds"] / result["torch_assign_seconds"], 2)
    result["assign_agreement"] = round(float((ours == theirs).mean()), 5)
    result["frames"] = features.shape[0]
    result["assign_device"] = device
    return result


LIBRIVOX_CLIPS = os.path.join(REPO, "tests", "data", "librivox")  # three public-domain read-speech clips
PEAK_MEMORY_SCRIPT = """
import json, sys
import torch
from slam_recipes.audio.features import MFCCFeatures
from slam_recipes.audio.kmeans import NearestCentroid
from slam_recipes.audio.segmentation import Segmenter
from slam_recipes.audio.tokenizer import tokenize_rows

def kilobytes(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

path, method, warm_up, max_seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
extractor, assigner = MFCCFeatures(frame_rate=25), NearestCentroid(torch.randn(50, 39))
segmenter = Segmenter(method, max_seconds, hop=extractor.hop, window=extractor.window)
tokenize_rows([{"audio": warm_up}], ["audio"], extractor, assigner, segmenter=segmenter)
before = kilobytes("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) counts from here
out, _, seconds = tokenize_rows([{"audio": path}], ["audio"], extractor, assigner, segmenter=segmenter,
                                keep_durations=True, max_batch_samples=int(max_seconds * 16000))
print(json.dumps({"peak_mb": kilobytes("VmHWM") / 1024, "growth_mb": (kilobytes("VmHWM") - before) / 1024,
                  "rows": len(out), "audio_seconds": seconds, "lengths": [r["end"] - r["start"] for r in out],
                  "frames": sum(int(r["duration"].sum()) for r in out), "file_frames": extractor.num_frames(
                      round(seconds * 16000))}))
"""


def write_long_recording(path: str, minutes: float, seed: int = 0) -> str:
    """A FLAC file of `minutes` of real speech: the LibriVox clips in a seeded order, each followed by a 0.3-2 s
    pause, written block by block (the file is never held in memory)."""
    import glob

    import numpy as np
    import soundfile

    clips = [soundfile.read(p, dtype="float32")[0] for p in sorted(glob.glob(os.path.join(LIBRIVOX_CLIPS, "*.flac")))]
    generator, total = np.random.default_rng(seed), 0
    with soundfile.SoundFile(path, "w", 16000, 1, format="FLAC") as f:
        while total < minutes * 60 * 16000:
            speech = clips[int(generator.integers(len(clips)))]
            pause = np.zeros(int(generator.uniform(0.3, 2.0) * 16000), np.float32)
            f.write(speech)
            f.write(pause)
            total += len(speech) + len(pause)
    return path


def tokenize_peak_memory(path: str, method: str, max_segment_seconds: float = 30.0) -> dict:
    """Tokenise one recording (MFCC at 25 Hz, segmented by `method`, one segment per feature batch) in a fresh
    process; its peak resident memory (Linux VmHWM) and growth while tokenising, in MB, the seconds it took, and the
    segments' lengths and frames. Needs /proc/self/clear_refs (Linux)."""
    import glob

    warm_up = sorted(glob.glob(os.path.join(LIBRIVOX_CLIPS, "*.flac")))[0]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT, path, method, warm_up, str(max_segment_seconds)],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.splitlines()[-1]) | {"process_seconds": round(time.perf_counter() - start, 1)}


def bench_long_recording(minutes: tuple[float, ...] = (1.0, 60.0)) -> list[dict]:
    """Peak memory and time to tokenise real speech recordings of each length in `minutes` (made here from the
    LibriVox clips), cut by silero-vad and by fixed windows into segments of at most 30 s: memory must not grow with
    the length."""
    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for length in minutes:
            path = write_long_recording(os.path.join(folder, f"{length:g}min.flac"), length)
            for method in ("vad", "fixed"):
                r = tokenize_peak_memory(path, method)
                lengths = r.pop("lengths")
                rows.append({"minutes": length, "segmentation": method, **r, "segments": len(lengths),
                             "segment_seconds_min_median_max": [round(float(x), 2) for x in (
                                 min(lengths), np.median(lengths), max(lengths))]})  # fmt: skip
    return rows


SECTIONS = (
    "preparation",
    "precision",
    "throughput",
    "training",
    "dpo",
    "evaluation",
    "tokenization",
    "long_recording",
)
