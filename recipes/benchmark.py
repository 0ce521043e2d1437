"""Benchmark the recipes on this machine: unit-dataset preparation, pretraining throughput variant by variant (padded,
block, padding-free with each attention kernel, then optimisations kept only when they pay), demo DPO pairs/s, the
pairwise likelihood evaluation, and audio → units.

Usage:
    make bench                                            # every section; on CPU the throughput uses a tiny model
    python recipes/benchmark.py --only throughput         # on a GPU: the real Slam model (Qwen2.5-0.5B architecture)
    python recipes/benchmark.py --only throughput --throughput_recipe recipes/slam_scaled/pretrain.yaml

Prints markdown tables and writes `<output_dir>/bench.json` (and `<output_dir>/throughput/throughput.json`). Not a
test: numbers depend on the machine.
"""

import argparse
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

    from slam_recipes.data.packing import pack
    from slam_recipes.data.sources import count_tokens, load_source, to_token_ids
    from slam_recipes.throughput import string_tokenizer_ids

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
    """The demo recipe through the real script; tokens/s as the throughput benchmark takes it (median of the logged
    intervals after the first)."""
    from slam_recipes.throughput import summarise_logs

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
    from slam_recipes.throughput import measured_matmul_tflops, summarise_logs

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
    """The demo DPO recipe from the benchmark's demo model, with and without precomputed reference log-probs.
    (Padding-free DPO batches: TRL 1.16's DPOTrainer turns `padding_free` off with a warning, so the real-token
    fraction shows what padding costs instead.)"""
    from slam_recipes.throughput import summarise_logs

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


SECTIONS = ("preparation", "precision", "throughput", "training", "dpo", "evaluation", "tokenization")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="Sections to run.")
    parser.add_argument("--num_utterances", type=int, default=20000)
    parser.add_argument("--context_length", type=int, default=1024)
    parser.add_argument("--throughput_recipe", default=os.path.join(REPO, "recipes", "slam", "pretrain.yaml"))
    parser.add_argument("--throughput_steps", type=int, default=None, help="Default: 20 on a GPU, 16 on CPU.")
    parser.add_argument("--repeats", type=int, default=None, help="Runs per variant. Default: 1 on a GPU, 2 on CPU.")
    parser.add_argument("--peak_tflops", type=float, default=None, help="Default: datasheet (GPU) / measured (CPU).")
    parser.add_argument("--train_steps", type=int, default=60)
    parser.add_argument("--precision_steps", type=int, default=8, help="Demo steps per precision (CPU only).")
    parser.add_argument("--dpo_steps", type=int, default=30)
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_results"))
    return parser


def main() -> None:
    args = build_parser().parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import datasets
    import torch
    import transformers

    from slam_recipes.precision import cpu_capability, native_bf16

    datasets.disable_progress_bars()
    cuda = torch.cuda.is_available()
    cpu = cpu_capability()
    device = torch.cuda.get_device_name() if cuda else f"{cpu['model']}, {os.cpu_count()} cores"
    native, why = native_bf16("cuda" if cuda else "cpu")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": device,
        "cpu": cpu,
        "native_bf16": native,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
            "cuda": torch.version.cuda,
        },
    }
    print(f"## slam-recipes benchmark ({device}, torch {torch.__version__}, transformers {transformers.__version__})")
    print(
        f"\nCPU: PyTorch ISA {cpu['isa']}, AVX512-BF16 {'yes' if cpu['avx512_bf16'] else 'no'}, AMX "
        f"{'yes' if cpu['amx'] else 'no'}; native bf16 here: {'yes' if native else 'no'} ({why})."
    )
    if "preparation" in args.only:
        result["preparation"] = prep = bench_preparation(args.num_utterances, args.context_length)
        print(
            f"\n{args.num_utterances:,} synthetic utterances; each stage the fastest of 3 cold runs; the token ids of"
        )
        print(f"the string path and the unit path checked equal on {prep['checked_rows']:,} rows.\n")
        print("| unit-dataset preparation | tokens | load s | units → ids s | ids tokens/s | total tokens/s |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in prep["rows"]:
            print(
                f"| {row['input']} | {row['tokens']:,} | {row['load_s']} | {row['ids_s']} | "
                f"{row['ids_tokens_per_s']:,} | {row['total_tokens_per_s']:,} |"
            )
        print(
            f"\nparquet unit path vs the string tokeniser: ×{prep['ids_speedup_parquet_vs_string']} (units → ids), "
            f"×{prep['total_speedup_parquet_vs_string']} (load included); padding-free packing of the parquet ids "
            f"into {prep['packing']['rows']:,} rows of {args.context_length}: {prep['packing']['seconds']} s"
        )
    if "precision" in args.only and not cuda:
        result["precision"] = p = bench_precision(args.precision_steps, args.output_dir)
        print("\n| float32 vs bf16 on this CPU | float32 | bf16 | bf16 / float32 |")
        print("|---|---:|---:|---:|")
        print(
            f"| 1024³ matmul, s (TFLOP/s) | {p['matmul_1024_float32_s']} ({p['matmul_1024_float32_tflops']}) | "
            f"{p['matmul_1024_bfloat16_s']} ({p['matmul_1024_bfloat16_tflops']}) | {p['matmul_bf16_vs_float32']} |"
        )
        print(
            f"| demo training ({p['steps']} steps), real tokens/s | {p['demo_float32_tokens_per_s']:,} | "
            f"{p['demo_bf16_tokens_per_s']:,} | {p['demo_bf16_vs_float32']} |"
        )
    if "throughput" in args.only:
        from slam_recipes.throughput import default_setup, markdown_table, run_benchmark

        setup = default_setup(args.throughput_recipe, cuda, args.throughput_steps, args.peak_tflops)
        repeats = args.repeats or (1 if cuda else 2)
        runs = run_benchmark(
            setup, os.path.join(args.output_dir, "throughput"), cuda, repeats, log=lambda m: print(m, file=sys.stderr)
        )
        result["throughput"] = runs
        print(
            f"\nTraining throughput: {runs['recipe']} with {runs['model']} (random init), context "
            f"{runs['context_length']}, micro-batch {runs['micro_batch']} × {runs['accumulation']} accumulation, "
            f"{runs['steps']} steps (median of the {runs['log_every']}-step intervals after the first), "
            f"{repeats} run(s) per variant; synthetic units, mean {runs['data']['mean_units']} units per utterance. "
            f"MFU against {runs['peak_tflops'] or 'the GPU datasheet'} TFLOP/s ({runs['peak_source']}). "
            f"Optimisations are kept at ≥ {100 * runs['min_gain']:.0f} % more real tokens/s.\n"
        )
        print(markdown_table(runs))
        print(f"\nBest: {runs['best']} — settings {runs['best_settings']}")
    if "training" in args.only or "dpo" in args.only or "evaluation" in args.only:
        result["training"] = training = bench_training(args.train_steps, args.output_dir)
        print("\n| demo training | steps | tokens/s |")
        print("|---|---:|---:|")
        print(f"| {training['recipe']} | {training['steps']} | {training['tokens_per_s']:,} |")
    if "dpo" in args.only:
        result["dpo"] = dpo = bench_dpo(os.path.join(args.output_dir, "demo-train"), args.dpo_steps, args.output_dir)
        print(
            "\n| DPO (recipes/demo/dpo.yaml) | steps | train pairs/s | real / computed tokens | data wait | script s |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for row in dpo:
            name = (
                "precomputed reference log-probs" if row["precompute_ref_log_probs"] else "reference model in the loop"
            )
            print(
                f"| {name} | {row['steps']} | {row['train_pairs_per_s']} | {row['real_token_fraction']:.3f} | "
                f"{100 * row['data_wait_fraction']:.1f} % | {row['script_seconds']} |"
            )
    if "evaluation" in args.only:
        result["evaluation"] = evaluation = bench_evaluation(os.path.join(args.output_dir, "demo-train"))
        print(
            "\n| likelihood evaluation (data/demo/eval) | pairs | pairs/s, batched by length | pairs/s, one per forward |"
        )
        print("|---|---:|---:|---:|")
        for row in evaluation:
            print(
                f"| {row['benchmark']} | {row['pairs']} | {row['batched_pairs_per_s']} | "
                f"{row['one_sample_per_forward_pairs_per_s']} |"
            )
    if "tokenization" in args.only:
        result["tokenization"] = t = bench_tokenization()
        print("\n| audio → units | value |")
        print("|---|---:|")
        print(f"| MFCC backend, audio-s/s | {t['mfcc_audio_s_per_s']} |")
        print(
            f"| tiny random HuBERT (4 layers, width 64, base strides), audio-s/s | {t['tiny_hubert_audio_s_per_s']} |"
        )
        print(
            f"| nearest centroid on {t['assign_device']}, {t['frames']:,} frames × 500 × 768: torch s / scikit-learn "
            f"predict s | {t['torch_assign_seconds']} / {t['sklearn_predict_seconds']} (×{t['assign_speedup']}, same "
            f"units for {100 * t['assign_agreement']:.2f} %) |"
        )
    with open(os.path.join(args.output_dir, "bench.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
