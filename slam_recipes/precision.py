"""Which floating-point precision a run computes in: bf16 only where the hardware computes it natively.

A recipe that asks for bf16 on hardware without native bf16 arithmetic runs far slower, not faster: on a CPU
without AVX512-BF16 or AMX, PyTorch emulates bf16 matrix products (measured on a 2-core AVX2 EPYC by `make bench`:
a 1024³ matmul takes 0.035 s in float32 and 3.1 s in bfloat16), and a CUDA GPU before Ampere has no bf16 tensor
cores at all. So:

- training (`bf16: true`): bf16 autocast where native; else float32 on CPU, fp16 autocast with loss scaling on a
  GPU (the Trainer's `fp16`);
- loading a model to run it (`dtype: auto` or `bfloat16`): bfloat16 where native, else float16 on a GPU and
  float32 on CPU.

`bf16_native_only: false` (every recipe) keeps bf16 wherever it is asked for; `bf16: false` or `dtype: float32`
forces float32. Every decision comes with a one-line reason for the log and the run's records.

This module imports torch only inside its functions, so configuration code can import it cheaply.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B12"): /proc/cpuinfo on Linux, else what `platform` knows."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        name = None
    return name or platform.processor() or platform.machine()


@functools.cache
def cpu_capability() -> dict:
    """What this CPU is and computes natively: its model name, PyTorch's dispatch ISA (`AVX2`, `AVX512`, ... as
    `torch.backends.cpu.get_cpu_capability()` reports it), AVX512-BF16, AMX tiles, and their sum `native_bf16`."""
    import torch

    # torch.cpu's feature probes (CPUID through cpuinfo) are the only portable way PyTorch exposes these flags.
    probe = {name: getattr(torch.cpu, f"_is_{name}_supported", None) for name in ("avx512_bf16", "amx_tile")}
    flags = {name: bool(check()) if check is not None else False for name, check in probe.items()}
    return {
        "model": cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": flags["avx512_bf16"],
        "amx": flags["amx_tile"],
        "native_bf16": flags["avx512_bf16"] or flags["amx_tile"],
    }


def default_device(device: str | None = None) -> str:
    """`device` when one is given ("cpu", "cuda:1", ...), else "cuda" where PyTorch sees a CUDA GPU and "cpu"
    elsewhere: the device the recipes load their models to when `--device` is not set. A CUDA device where PyTorch
    sees none (a CPU build, no driver) is a ConfigError."""
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        from slam_recipes.errors import ConfigError

        raise ConfigError(f"device {device}: this PyTorch sees no CUDA GPU (torch.cuda.is_available() is False)")
    return str(device)


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether `device` ("cpu", "cuda", "cuda:1", ...) computes bf16 natively, and why, in a few words. Devices other
    than CPU and CUDA (mps, xpu, ...) are trusted to do what they are asked."""
    import torch

    kind = str(device).split(":")[0]
    if kind == "cpu":
        cpu = cpu_capability()
        if cpu["native_bf16"]:
            return True, f"this CPU has {'AMX' if cpu['amx'] else 'AVX512-BF16'}"
        return False, f"this CPU has no AVX512-BF16 or AMX (PyTorch ISA {cpu['isa']}), so bf16 is emulated"
    if kind == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name()} supports bf16"
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "the GPU"
        return False, f"{name} has no native bf16 (torch.cuda.is_bf16_supported() is False)"
    return True, f"{kind} is trusted to compute bf16"


@dataclass(frozen=True)
class PrecisionChoice:
    """A run's precision: what the recipe asked for, what it gets (`bf16`, `fp16` or `fp32`), and why."""

    requested: str
    chosen: str
    reason: str

    @property
    def fell_back(self) -> bool:
        return self.requested != self.chosen

    def as_dict(self) -> dict:
        return {"requested": self.requested, "chosen": self.chosen, "reason": self.reason}


def choose_training_precision(bf16: bool, fp16: bool, device: str, native_only: bool = True) -> PrecisionChoice:
    """The Trainer's mixed precision for a run on `device`: the recipe's `bf16` / `fp16` flags, with bf16 replaced
    where the hardware lacks it (unless `native_only` is False): float32 on CPU, fp16 with loss scaling on a GPU."""
    requested = "bf16" if bf16 else "fp16" if fp16 else "fp32"
    if requested != "bf16":
        return PrecisionChoice(requested, requested, "as the recipe asks")
    native, why = native_bf16(device)
    if native:
        return PrecisionChoice("bf16", "bf16", why)
    if not native_only:
        return PrecisionChoice("bf16", "bf16", f"forced by bf16_native_only: false, although {why}")
    fallback = "fp32" if str(device).startswith("cpu") else "fp16"
    scaling = " with loss scaling" if fallback == "fp16" else ""
    return PrecisionChoice("bf16", fallback, f"{why}: training in {fallback}{scaling} instead")


def choose_dtype(dtype: str, device: str, native_only: bool = True) -> PrecisionChoice:
    """The dtype to load a model in for inference on `device`: `auto` is bfloat16 where native, float16 on a GPU
    without it and float32 on CPU; `bfloat16` falls back the same way unless `native_only` is False; `float16` and
    `float32` are kept. `chosen` is a torch dtype name."""
    if dtype not in ("auto", "bfloat16"):
        return PrecisionChoice(dtype, dtype, "as the recipe asks")
    on_cpu = str(device).startswith("cpu")
    if dtype == "auto" and on_cpu:
        return PrecisionChoice(dtype, "float32", "auto on CPU")
    native, why = native_bf16(device)
    if native or not native_only:
        return PrecisionChoice(
            dtype, "bfloat16", why if native else f"forced by bf16_native_only: false, although {why}"
        )
    fallback = "float32" if on_cpu else "float16"
    return PrecisionChoice(dtype, fallback, f"{why}: running in {fallback} instead")


def load_dtype(dtype: str, device: str, native_only: bool = True, what: str = "model"):
    """`choose_dtype` as the torch dtype to load `what` in, with its one log line."""
    import torch

    choice = choose_dtype(dtype, device, native_only=native_only)
    log_choice(choice, what)
    return getattr(torch, choice.chosen)


def log_choice(choice: PrecisionChoice, what: str) -> None:
    """One log line: a warning when the recipe's request was replaced, else at INFO."""
    level = logging.WARNING if choice.fell_back and choice.requested != "auto" else logging.INFO
    logger.log(level, "%s precision: %s (asked: %s) - %s", what, choice.chosen, choice.requested, choice.reason)
