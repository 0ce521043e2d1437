"""Measure this package's speed on this machine (`make bench`): unit-dataset preparation, float32 against bf16,
pretraining throughput variant by variant (padded, block, padding-free with each attention kernel, then
optimisations kept only when they pay), demo DPO pairs/s, the pairwise likelihood evaluation, and audio → units.

Usage:
    make bench                                       # every section; on CPU the throughput uses a tiny model
    python -m bench.run --only throughput            # on a GPU: the real Slam model (Qwen2.5-0.5B architecture)
    python -m bench.run --only throughput --throughput_recipe recipes/slam_scaled/pretrain.yaml

Prints markdown tables and writes `<output_dir>/bench.json` (and `<output_dir>/throughput/throughput.json`), with
the machine it ran on. Not a test: the figures depend on the machine (docs/bench.md has them, each with its machine).
"""

import json
import os
import sys
import time
from dataclasses import dataclass, field

from bench import sections
from bench.sections import REPO, SECTIONS
from slam_recipes.errors import ConfigError, run_entry_point


@dataclass
class BenchArguments:
    only: list[str] = field(
        default_factory=lambda: list(SECTIONS), metadata={"help": f"Sections to run, of {', '.join(SECTIONS)}."}
    )
    num_utterances: int = field(default=20000, metadata={"help": "Synthetic utterances for the preparation section."})
    context_length: int = field(default=1024, metadata={"help": "Context of the preparation section's packing."})
    throughput_recipe: str = field(
        default="recipes/slam/pretrain.yaml", metadata={"help": "The recipe whose settings the throughput varies."}
    )
    throughput_steps: int | None = field(default=None, metadata={"help": "Default: 20 on a GPU, 16 on CPU."})
    repeats: int | None = field(default=None, metadata={"help": "Runs per variant. Default: 1 on a GPU, 2 on CPU."})
    peak_tflops: float | None = field(default=None, metadata={"help": "Default: datasheet (GPU) / measured (CPU)."})
    train_steps: int = field(default=60, metadata={"help": "Demo training steps of the training section."})
    precision_steps: int = field(default=8, metadata={"help": "Demo steps per precision (CPU only)."})
    dpo_steps: int = field(default=30, metadata={"help": "Demo DPO steps per variant."})
    output_dir: str = field(default="bench_results", metadata={"help": "Where bench.json and the runs go."})

    def __post_init__(self):
        unknown = sorted(set(self.only) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"only: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
        self.throughput_recipe = os.path.join(REPO, self.throughput_recipe)  # relative paths: from the checkout
        self.output_dir = os.path.join(REPO, self.output_dir)


def main() -> None:
    from slam_recipes.configs import parse_recipe_args

    (args,) = parse_recipe_args((BenchArguments,))
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
    print(f"## slam-recipes bench ({device}, torch {torch.__version__}, transformers {transformers.__version__})")
    print(
        f"\nCPU: PyTorch ISA {cpu['isa']}, AVX512-BF16 {'yes' if cpu['avx512_bf16'] else 'no'}, AMX "
        f"{'yes' if cpu['amx'] else 'no'}; native bf16 here: {'yes' if native else 'no'} ({why})."
    )
    if "preparation" in args.only:
        result["preparation"] = prep = sections.bench_preparation(args.num_utterances, args.context_length)
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
        result["precision"] = p = sections.bench_precision(args.precision_steps, args.output_dir)
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
        from bench.throughput import default_setup, markdown_table, run_throughput

        setup = default_setup(args.throughput_recipe, cuda, args.throughput_steps, args.peak_tflops)
        repeats = args.repeats or (1 if cuda else 2)
        runs = run_throughput(
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
        result["training"] = training = sections.bench_training(args.train_steps, args.output_dir)
        print("\n| demo training | steps | tokens/s |")
        print("|---|---:|---:|")
        print(f"| {training['recipe']} | {training['steps']} | {training['tokens_per_s']:,} |")
    if "dpo" in args.only:
        result["dpo"] = dpo = sections.bench_dpo(
            os.path.join(args.output_dir, "demo-train"), args.dpo_steps, args.output_dir
        )
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
        result["evaluation"] = evaluation = sections.bench_evaluation(os.path.join(args.output_dir, "demo-train"))
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
        result["tokenization"] = t = sections.bench_tokenization()
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
    if "long_recording" in args.only:
        result["long_recording"] = rows = sections.bench_long_recording()
        print(
            "\n| long recording (real speech + pauses), MFCC | peak MB | growth MB | seconds | segments "
            "| min / median / max s |"
        )
        print("|---|---:|---:|---:|---:|---|")
        for r in rows:
            low, mid, high = r["segment_seconds_min_median_max"]
            print(
                f"| {r['minutes']:g} min, {r['segmentation']} | {r['peak_mb']:.1f} | {r['growth_mb']:.1f} | "
                f"{r['process_seconds']} | {r['segments']} | {low} / {mid} / {high} |"
            )
    with open(os.path.join(args.output_dir, "bench.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    run_entry_point(main)
