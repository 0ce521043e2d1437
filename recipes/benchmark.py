"""Benchmark the recipes on this machine: unit-dataset preparation, demo pretraining and DPO throughput, and the
speed of the pairwise likelihood evaluation.

Usage:
    make bench
    python recipes/benchmark.py --num_utterances 20000 --train_steps 60 --output_dir bench_results

Prints a markdown table and writes `<output_dir>/bench.json`. Not a test: numbers depend on the machine.
"""

import argparse
import json
import os
import platform
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


def bench_preparation(num_utterances: int, context_length: int) -> list[dict]:
    import datasets

    from slam_recipes.data import build_pretraining_datasets, count_tokens

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_synthetic_units(folder, num_utterances)
        for name, path in paths.items():
            datasets.config.HF_DATASETS_CACHE = os.path.join(folder, f"cache-{len(rows)}")  # cold cache each time
            start = time.perf_counter()
            train, _ = build_pretraining_datasets([path], num_units=500, context_length=context_length)
            seconds = time.perf_counter() - start
            tokens = count_tokens(train)
            rows.append(
                {
                    "input": name,
                    "tokens": tokens,
                    "seconds": round(seconds, 2),
                    "tokens_per_s": round(tokens / seconds),
                }
            )
    return rows


def bench_training(steps: int, output_dir: str) -> dict:
    """The demo recipe through the real script; tokens/s from the logged intervals after the first."""
    run_dir = os.path.join(output_dir, "demo-train")
    command = [
        sys.executable, os.path.join(REPO, "recipes", "pretrain.py"), "--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"),
        "--output_dir", run_dir, "--max_steps", str(steps), "--logging_steps", "10", "--eval_strategy", "no",
        "--save_strategy", "no", "--disable_tqdm", "true",
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    with open(os.path.join(run_dir, "trainer_state.json")) as f:
        logs = [h for h in json.load(f)["log_history"] if "tokens_per_second" in h]
    rates = [h["tokens_per_second"] for h in logs]
    return {"recipe": "recipes/demo/pretrain.yaml", "steps": steps, "tokens_per_s": round(sum(rates) / len(rates))}


def bench_dpo(model_dir: str, steps: int, output_dir: str) -> list[dict]:
    """The demo DPO recipe from the benchmark's demo model, with and without precomputed reference log-probs."""
    rows = []
    for precompute in (False, True):
        run_dir = os.path.join(output_dir, f"demo-dpo-precompute-{precompute}")
        command = [
            sys.executable, os.path.join(REPO, "recipes", "dpo.py"), "--config", os.path.join(REPO, "recipes/demo/dpo.yaml"),
            "--model_name_or_path", model_dir, "--output_dir", run_dir, "--max_steps", str(steps),
            "--eval_strategy", "no", "--disable_tqdm", "true", "--precompute_ref_log_probs", str(precompute).lower(),
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        wall = time.perf_counter() - start
        with open(os.path.join(run_dir, "train_results.json")) as f:
            metrics = json.load(f)
        rows.append(
            {
                "precompute_ref_log_probs": precompute,
                "steps": steps,
                "train_pairs_per_s": round(metrics["train_samples_per_second"], 2),
                "script_seconds": round(wall, 1),
            }
        )
    return rows


def bench_evaluation(model_dir: str) -> list[dict]:
    """Pairs/s of the likelihood metrics on the demo benchmarks: batched by length (the recipe's way) against one
    sample per forward pass."""
    from slam_recipes.evaluation import evaluate_benchmark, load_benchmarks
    from slam_recipes.model import load_speech_lm

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

    from slam_recipes.features import HubertFeatures, MFCCFeatures
    from slam_recipes.kmeans import NearestCentroid

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_utterances", type=int, default=20000)
    parser.add_argument("--context_length", type=int, default=1024)
    parser.add_argument("--train_steps", type=int, default=60)
    parser.add_argument("--dpo_steps", type=int, default=30)
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_results"))
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import datasets
    import torch

    datasets.disable_progress_bars()
    preparation = bench_preparation(args.num_utterances, args.context_length)
    training = bench_training(args.train_steps, args.output_dir)
    dpo = bench_dpo(os.path.join(args.output_dir, "demo-train"), args.dpo_steps, args.output_dir)
    evaluation = bench_evaluation(os.path.join(args.output_dir, "demo-train"))
    tokenization = bench_tokenization()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"

    print(f"## slam-recipes benchmark ({machine})\n")
    print("| unit-dataset preparation (load → ids → pack) | tokens | seconds | tokens/s |")
    print("|---|---:|---:|---:|")
    for row in preparation:
        print(f"| {row['input']} | {row['tokens']:,} | {row['seconds']} | {row['tokens_per_s']:,} |")
    print("\n| training | steps | tokens/s |")
    print("|---|---:|---:|")
    print(f"| {training['recipe']} | {training['steps']} | {training['tokens_per_s']:,} |")
    print("\n| DPO (recipes/demo/dpo.yaml) | steps | train pairs/s | script seconds (incl. start-up) |")
    print("|---|---:|---:|---:|")
    for row in dpo:
        name = "precomputed reference log-probs" if row["precompute_ref_log_probs"] else "reference model in the loop"
        print(f"| {name} | {row['steps']} | {row['train_pairs_per_s']} | {row['script_seconds']} |")
    print(
        "\n| likelihood evaluation (data/demo/eval) | pairs | pairs/s, batched by length | pairs/s, one sample per forward |"
    )
    print("|---|---:|---:|---:|")
    for row in evaluation:
        print(
            f"| {row['benchmark']} | {row['pairs']} | {row['batched_pairs_per_s']} | "
            f"{row['one_sample_per_forward_pairs_per_s']} |"
        )
    t = tokenization
    print("\n| audio → units | value |")
    print("|---|---:|")
    print(f"| MFCC backend, audio-s/s | {t['mfcc_audio_s_per_s']} |")
    print(f"| tiny random HuBERT (4 layers, width 64, base strides), audio-s/s | {t['tiny_hubert_audio_s_per_s']} |")
    print(
        f"| nearest centroid on {t['assign_device']}, {t['frames']:,} frames × 500 × 768: torch s / scikit-learn "
        f"predict s | {t['torch_assign_seconds']} / {t['sklearn_predict_seconds']} (×{t['assign_speedup']}, same units "
        f"for {100 * t['assign_agreement']:.2f} %) |"
    )
    result = {
        "machine": machine,
        "preparation": preparation,
        "training": training,
        "dpo": dpo,
        "evaluation": evaluation,
        "tokenization": tokenization,
    }
    with open(os.path.join(args.output_dir, "bench.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
