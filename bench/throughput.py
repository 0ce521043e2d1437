"""Training throughput of the pretraining recipe, variant by variant: padded batches (the plain HF default), block
packing, padding-free packing with each attention kernel at hand, then optimisations on top, each kept only when it
pays.

Every variant is `recipes/pretrain.py` itself, run as its own process (so peak memory and compilation caches are its
own) with a recipe YAML derived from the one benchmarked: synthetic units as data, no evaluation or checkpoints,
`max_steps`, and the variant's settings. The figures come from the trainer's own logs (see
`slam_recipes.training.trainer.SlamTrainerMixin`): real (non-padding) tokens/s, real / computed tokens, MFU, the share of time
spent waiting for data, and peak memory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from slam_recipes.errors import ConfigError, first_line
from slam_recipes.training.records import summarise_logs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLAM_ARCHITECTURE = os.path.join(REPO, "recipes", "slam", "qwen2.5-0.5b-architecture")  # Qwen2.5-0.5B, config only
TINY_ARCHITECTURE = os.path.join(REPO, "recipes", "demo", "tiny-qwen2")
MEAN_UNITS = 620  # mean utterance length of the synthetic data, in units (the paper's corpora: ≈ 25 s at 25 Hz)
MIN_GAIN = 0.03  # an optimisation is kept when it raises real tokens/s by at least this fraction


def synthetic_lengths(num_documents: int, context_length: int, mean: float = MEAN_UNITS, seed: int = 0) -> np.ndarray:
    """Utterance lengths in units: log-normal (σ = 0.5), capped so that `<S> units <S>` fits the context, with the
    log-mean chosen so the capped lengths average `mean`."""
    if not 1 <= mean <= context_length - 2:
        raise ConfigError(f"mean length {mean} does not fit context_length {context_length}")
    normal = np.random.default_rng(seed).standard_normal(num_documents)
    cap = context_length - 2
    low, high = 0.0, np.log(cap) + 3.0
    for _ in range(60):  # bisection on the log-mean: the capped mean grows with it
        middle = (low + high) / 2
        if np.minimum(np.exp(middle + 0.5 * normal), cap).mean() < mean:
            low = middle
        else:
            high = middle
    return np.clip(np.exp(high + 0.5 * normal), 1, cap).astype(np.int64)


def write_synthetic_parquet(
    path: str, num_documents: int, context_length: int, mean: float = MEAN_UNITS, seed: int = 0
) -> dict:
    """A parquet file of `num_documents` rows of random units (`units` column) with `synthetic_lengths`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lengths = synthetic_lengths(num_documents, context_length, mean, seed)
    values = np.random.default_rng(seed + 1).integers(0, 500, size=int(lengths.sum()), dtype=np.uint16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    pq.write_table(pa.table({"units": column}), path)
    return {"documents": num_documents, "mean_units": round(float(lengths.mean()), 1), "max_units": int(lengths.max())}


@dataclass
class Variant:
    """One configuration: recipe overrides applied on top of the variant it builds on."""

    name: str
    overrides: dict
    stage: str  # "packing": measured side by side; "kernel": padding-free kernels; "optimisation": kept if it pays
    requires: tuple[str, ...] = ()  # importable modules it needs (skipped otherwise)
    needs_cuda: bool = False
    why_skipped: str | None = None
    result: dict = field(default_factory=dict)


def variants(context_length: int, batch_size: int, accumulation: int) -> list[Variant]:
    """The variants in the order they run. The packing modes and padding-free kernels start from the same baseline
    (sdpa, plain `adamw_torch`; transformers 5's own default, the fused AdamW, is the first optimisation tried) and
    are compared side by side; each optimisation is then tried on top of the best so far."""
    found = [
        Variant("padded batches (HF default collator)", {"packing": "none"}, "packing"),
        Variant("block packing (crosses utterances)", {"packing": "block"}, "packing"),
        Variant("padding-free, sdpa", {"packing": "padding_free", "attn_implementation": "sdpa"}, "kernel"),
        Variant(
            "padding-free, sdpa_varlen",
            {"packing": "padding_free", "attn_implementation": "sdpa_varlen"},
            "kernel",
        ),
        Variant(  # PyTorch 2.13 has no FlexAttention backward on CPU
            "padding-free, flex_attention",
            {"packing": "padding_free", "attn_implementation": "flex_attention"},
            "kernel",
            needs_cuda=True,
        ),
        *(
            Variant(
                f"padding-free, {kernel}",
                {"packing": "padding_free", "attn_implementation": kernel},
                "kernel",
                requires=(module,),
                needs_cuda=True,
            )
            for kernel, module in (("flash_attention_2", "flash_attn"), ("flash_attention_3", "flash_attn_interface"))
        ),
        Variant("+ fused AdamW", {"optim": "adamw_torch_fused"}, "optimisation"),
        Variant(
            "+ static shapes + torch.compile",
            {"pad_to_multiple_of": context_length, "torch_compile": True},
            "optimisation",
        ),
    ]
    if accumulation % 2 == 0:
        found.append(
            Variant(
                f"+ micro-batch {2 * batch_size} × {accumulation // 2} accumulation",
                {"per_device_train_batch_size": 2 * batch_size, "gradient_accumulation_steps": accumulation // 2},
                "optimisation",
            )
        )
    found.append(
        Variant(
            "+ liger-kernel (RMSNorm, RoPE, SwiGLU, fused loss)",
            {"use_liger_kernel": True},
            "optimisation",
            requires=("liger_kernel",),
            needs_cuda=True,
        )
    )
    return found


def availability(variant: Variant, cuda: bool) -> str | None:
    """Why a variant cannot run here, or None."""
    if variant.needs_cuda and not cuda:
        return "needs a CUDA GPU"
    missing = [m for m in variant.requires if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def variant_recipe(base: dict, overrides: dict, data_file: str, output_dir: str, steps: int, log_every: int) -> dict:
    """The benchmarked recipe turned into a benchmark run: the synthetic data, no evaluation, benchmarks or
    checkpoints, a fixed number of steps, a log every `log_every` steps, and the variant's settings."""
    recipe = dict(base)
    for key in ("validation_split", "benchmarks", "hub_model_id", "push_to_hub", "resume_from_checkpoint"):
        recipe.pop(key, None)
    recipe.update(
        dataset_name=[data_file],
        validation_fraction=0.0,
        eval_strategy="no",
        save_strategy="no",
        max_steps=steps,
        logging_steps=log_every,
        logging_first_step=False,
        output_dir=output_dir,
        overwrite_output_dir=True,  # the interleaved repeats of a variant train into the same folder
        report_to="none",
        disable_tqdm=True,
    )
    recipe.update(overrides)
    return recipe


def run_variant(recipe: dict, folder: str, timeout: float | None = None) -> dict:
    """Run `recipes/pretrain.py` on `recipe` in a process of its own; its summarised logs, or the error."""
    os.makedirs(recipe["output_dir"], exist_ok=True)
    config = os.path.join(folder, os.path.basename(recipe["output_dir"]) + ".yaml")
    with open(config, "w") as f:
        yaml.safe_dump(recipe, f, sort_keys=False)
    command = [sys.executable, os.path.join(REPO, "recipes", "pretrain.py"), "--config", config]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = round(time.perf_counter() - start, 1)
    state = os.path.join(recipe["output_dir"], "trainer_state.json")
    if done.returncode != 0 or not os.path.isfile(state):
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit code {done.returncode}", "wall_s": wall}
    with open(state) as f:
        result = summarise_logs(json.load(f)["log_history"])
    result["wall_s"] = wall
    return result


def measured_matmul_tflops(windows: int = 5, seconds: float = 0.5, size: int = 2048, dtype: str = "bfloat16") -> float:
    """Matrix-multiply TFLOP/s this process reaches on CPU in `dtype`, the best of `windows` timings (a shared
    machine's slow spells would otherwise set the reference): the reference for MFU where there is no datasheet peak
    (a CPU's peak depends on its clocks and vector units)."""
    import torch

    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    a @ b  # warm-up
    best = 0.0
    for _ in range(windows):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start) / 1e12)
    return best


@dataclass
class Setup:
    """What is benchmarked: the recipe, and the sizes that differ between a GPU run and the CPU one."""

    recipe: str
    model: str
    batch_size: int
    accumulation: int
    steps: int
    log_every: int
    overrides: dict  # applied to every variant (device and loader settings)
    peak_tflops: float | None = None
    peak_source: str = ""
    mean_units: float = MEAN_UNITS


def default_setup(recipe: str, cuda: bool, steps: int | None = None, peak_tflops: float | None = None) -> Setup:
    """On a GPU: the recipe's own model (random init of its architecture), batch and accumulation. On CPU: the same
    recipe with the tiny demo architecture and a smaller batch, in bf16 autocast where this CPU computes bf16
    natively, else in float32 (`slam_recipes.precision`); the MFU reference is a matmul in that precision."""
    with open(recipe) as f:
        base = yaml.safe_load(f)
    mean = MEAN_UNITS * min(1.0, int(base.get("context_length", 1024)) / 1024)  # shorter contexts: in proportion
    if cuda:
        model = SLAM_ARCHITECTURE if "qwen2.5-0.5b" in str(base.get("model_name_or_path", "")).lower() else None
        model = model or base["model_name_or_path"]
        return Setup(
            recipe,
            model,
            int(base.get("per_device_train_batch_size", 8)),
            int(base.get("gradient_accumulation_steps", 1)),
            steps or 20,
            4,
            {},
            peak_tflops,
            "--peak_tflops" if peak_tflops else "datasheet (slam_recipes.training.trainer.PEAK_BF16_TFLOPS)",
            mean,
        )
    if peak_tflops is None:
        from slam_recipes.precision import cpu_capability

        dtype = "bfloat16" if cpu_capability()["native_bf16"] else "float32"
        peak_tflops = round(measured_matmul_tflops(dtype=dtype), 3)
        source = f"best of 5 {dtype} 2048² matmul timings on this CPU"
    else:
        source = "--peak_tflops"
    cpu = {"use_cpu": True, "bf16": True, "dataloader_num_workers": 1, "dataloader_pin_memory": False}
    return Setup(recipe, TINY_ARCHITECTURE, 4, 2, steps or 16, 4, cpu, peak_tflops, source, mean)


def run_throughput(setup: Setup, output_dir: str, cuda: bool, repeats: int = 1, log=print) -> dict:
    """Run every variant of `setup` (`repeats` times each; the run of median speed counts) and return the results
    (also written to `<output_dir>/throughput.json`)."""
    with open(setup.recipe) as f:
        base = yaml.safe_load(f)
    context = int(base.get("context_length", 1024))
    base.update(
        model_name_or_path=setup.model,
        twist_init=False,
        per_device_train_batch_size=setup.batch_size,
        gradient_accumulation_steps=setup.accumulation,
        attn_implementation="sdpa",
        optim="adamw_torch",
        **setup.overrides,
    )
    if setup.peak_tflops:
        base["peak_tflops"] = setup.peak_tflops
    os.makedirs(output_dir, exist_ok=True)
    data_file = os.path.join(output_dir, "synthetic_units.parquet")
    rows_needed = setup.steps * 2 * setup.batch_size * setup.accumulation  # 2×: room for the larger micro-batch
    # two documents per row needed: padded batches take one document per row, packed rows ≈ 1.6
    data = write_synthetic_parquet(data_file, 2 * rows_needed, context, setup.mean_units)
    found = variants(context, setup.batch_size, setup.accumulation)
    for variant in found:
        variant.why_skipped = availability(variant, cuda)
        if variant.why_skipped:
            log(f"[{variant.name}] skipped: {variant.why_skipped}")
    runnable = [v for v in found if not v.why_skipped]

    walls: list[float] = []

    def measure(variant: Variant, overrides: dict, runs: list[dict]) -> None:
        recipe = variant_recipe(base, overrides, data_file, os.path.join(output_dir, f"variant-{found.index(variant)}"),
                                setup.steps, setup.log_every)  # fmt: skip
        # a variant far slower than the others (say, recompiling every step) is stopped and reported as such
        timeout = 3 * max(walls) + 300 if walls else None
        runs.append(run_variant(recipe, output_dir, timeout))
        if "wall_s" in runs[-1]:
            walls.append(runs[-1]["wall_s"])
        last = runs[-1]
        log(
            f"[{variant.name}] "
            + (f"failed: {last['error']}" if "error" in last else f"{last['tokens_per_s']:,} real tokens/s")
        )

    def settle(variant: Variant, runs: list[dict]) -> None:
        """The run of median speed stands for the variant (any failure fails it)."""
        failed = [r for r in runs if "error" in r]
        ordered = sorted((r for r in runs if "error" not in r), key=lambda r: r["tokens_per_s"])
        variant.result = (
            failed[0] if failed else {**ordered[len(ordered) // 2], "runs": [r["tokens_per_s"] for r in runs]}
        )

    # Packing modes and padding-free kernels: measured side by side, in interleaved rounds (a slow spell of the
    # machine then hits every variant alike).
    compared = [v for v in runnable if v.stage != "optimisation"]
    runs: dict[str, list[dict]] = {v.name: [] for v in compared}
    for _ in range(repeats):
        for variant in compared:
            measure(variant, variant.overrides, runs[variant.name])
    best: Variant | None = None
    settings: dict = {}
    for variant in compared:
        settle(variant, runs[variant.name])
        if variant.stage == "kernel" and "error" not in variant.result:
            pays = best is None or variant.result["tokens_per_s"] > best.result["tokens_per_s"]
            variant.result["kept"] = pays
            if pays:
                if best is not None:
                    best.result["kept"] = False
                best, settings = variant, dict(variant.overrides)
    # Optimisations: each on top of the best so far, kept when it pays at least MIN_GAIN.
    for variant in runnable:
        if variant.stage != "optimisation":
            continue
        overrides, tries = {**settings, **variant.overrides}, []
        for _ in range(repeats):
            measure(variant, overrides, tries)
        settle(variant, tries)
        if "error" in variant.result:
            continue
        pays = best is None or variant.result["tokens_per_s"] >= best.result["tokens_per_s"] * (1 + MIN_GAIN)
        variant.result["kept"] = pays
        if pays:
            best, settings = variant, overrides
    baseline = found[0].result.get("tokens_per_s")
    for variant in found:
        if baseline and variant.result.get("tokens_per_s"):
            variant.result["vs_padded"] = round(variant.result["tokens_per_s"] / baseline, 2)
    result = {
        "recipe": os.path.relpath(setup.recipe, REPO) if setup.recipe.startswith(REPO) else setup.recipe,
        "model": os.path.relpath(setup.model, REPO) if setup.model.startswith(REPO) else setup.model,
        "context_length": context,
        "micro_batch": setup.batch_size,
        "accumulation": setup.accumulation,
        "steps": setup.steps,
        "log_every": setup.log_every,
        "data": data,
        "peak_tflops": setup.peak_tflops,
        "peak_source": setup.peak_source,
        "min_gain": MIN_GAIN,
        "repeats": repeats,
        "best": best.name if best else None,
        "best_settings": settings,
        "variants": [
            {"name": v.name, "stage": v.stage, "overrides": v.overrides, "skipped": v.why_skipped, **v.result}
            for v in found
        ],
    }
    with open(os.path.join(output_dir, "throughput.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def markdown_table(result: dict) -> str:
    """The variants side by side."""
    lines = [
        "| variant | real tokens/s | × padded | real / computed tokens | MFU | data wait | peak memory (GiB) | kept |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for v in result["variants"]:
        if v.get("skipped"):
            lines.append(f"| {v['name']} | skipped: {v['skipped']} | | | | | | |")
            continue
        if "error" in v:
            lines.append(f"| {v['name']} | failed: {first_line(v['error'])[:120]} | | | | | | no |")
            continue
        kept = {True: "yes", False: "no"}.get(v.get("kept"), "")
        mfu = f"{100 * v['mfu']:.1f} %" if v.get("mfu") is not None else "—"
        wait = f"{100 * v['data_wait_fraction']:.1f} %" if v.get("data_wait_fraction") is not None else "—"
        lines.append(
            f"| {v['name']} | {v['tokens_per_s']:,} | {v.get('vs_padded', '')} | {v['real_token_fraction']:.3f} | "
            f"{mfu} | {wait} | {v['peak_memory_gib']:.2f} | {kept} |"
        )
    return "\n".join(lines)


# The preparation benchmark's baseline (bench/run.py): how slamkit-style data is turned into ids.
def string_tokenizer_ids(dataset, num_units: int):
    """The slamkit-style baseline: `<Un..>` strings through a tokenizers WordLevel model (this package's unit
    tokenizer), framed `<S> ... <S>`, by a batched `datasets.map`."""
    from slam_recipes.units import BOS_TOKEN, EOS_TOKEN, build_unit_tokenizer

    tokenizer = build_unit_tokenizer(num_units)

    def encode(batch):
        texts = [BOS_TOKEN + text + EOS_TOKEN for text in batch["audio_repr"]]
        return {"input_ids": tokenizer(texts, add_special_tokens=False)["input_ids"]}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names)
