"""Precision by capability: bf16 only where the hardware computes it natively, whatever kind of CPU runs the tests.

The expected answer on this machine comes from a second source: the CPU flags Linux reports in /proc/cpuinfo
(`avx512_bf16`, `amx_bf16`), not PyTorch's CPUID probe that `slam_recipes.precision` uses."""

import os

import pytest
import torch
from conftest import REPO

from slam_recipes.configs import PreferenceDataArguments, parse_recipe_args
from slam_recipes.errors import ConfigError
from slam_recipes.precision import (
    choose_dtype,
    choose_training_precision,
    cpu_capability,
    default_device,
    native_bf16,
)
from slam_recipes.training.arguments import ModelArguments, PretrainModelArguments, SlamDPOConfig


def cpuinfo_native_bf16() -> bool:
    if not os.path.isfile("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo to check the CPU's flags against")
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("/proc/cpuinfo lists no flags")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_cpu_capability_agrees_with_the_kernel_flags():
    native = cpuinfo_native_bf16()
    capability = cpu_capability()
    assert capability["native_bf16"] == native
    assert capability["isa"] == torch.backends.cpu.get_cpu_capability()
    assert native_bf16("cpu")[0] == native


def test_training_precision_on_this_cpu():
    native = cpuinfo_native_bf16()
    choice = choose_training_precision(bf16=True, fp16=False, device="cpu")
    assert (choice.chosen, choice.fell_back) == (("bf16", False) if native else ("fp32", True))
    if not native:
        assert "AVX512-BF16 or AMX" in choice.reason and "fp32" in choice.reason
    # forcing either way
    assert choose_training_precision(True, False, "cpu", native_only=False).chosen == "bf16"
    assert choose_training_precision(False, False, "cpu").chosen == "fp32"
    assert choose_training_precision(False, True, "cpu").chosen == "fp16"  # what the recipe asks, untouched


def test_inference_dtype_on_this_cpu():
    native = cpuinfo_native_bf16()
    assert choose_dtype("auto", "cpu").chosen == "float32"
    assert choose_dtype("bfloat16", "cpu").chosen == ("bfloat16" if native else "float32")
    assert choose_dtype("bfloat16", "cpu", native_only=False).chosen == "bfloat16"
    assert choose_dtype("float16", "cpu").chosen == "float16"
    assert choose_dtype("float32", "cpu").chosen == "float32"


def test_default_device_is_the_gpu_when_there_is_one(monkeypatch):
    """The recipes' `--device` default; a CUDA device where PyTorch sees none is one error line, not CUDA's
    traceback. No GPU runs here: the CUDA query answers either way."""
    for visible, expected in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda visible=visible: visible)
        assert default_device() == default_device(None) == default_device("") == expected
        assert default_device("cpu") == "cpu"  # a given device is kept
        if visible:
            assert default_device("cuda:1") == "cuda:1"
        else:
            with pytest.raises(ConfigError, match=r"^device cuda:1: this PyTorch sees no CUDA GPU"):
                default_device("cuda:1")


def test_gpu_without_bf16_falls_back_to_fp16(monkeypatch):
    """No GPU runs here: the CUDA queries answer as a pre-Ampere GPU's (a V100) would."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    choice = choose_training_precision(True, False, "cuda")
    assert choice.chosen == "fp16" and "V100" in choice.reason and "loss scaling" in choice.reason
    assert choose_dtype("auto", "cuda").chosen == "float16"
    assert choose_dtype("bfloat16", "cuda:0").chosen == "float16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert choose_training_precision(True, False, "cuda").chosen == "bf16"
    assert choose_dtype("auto", "cuda").chosen == "bfloat16"


@pytest.mark.parametrize("recipe", ["demo/pretrain.yaml", "slam/pretrain.yaml"])
def test_recipes_asking_for_bf16_get_it_only_where_native(recipe, monkeypatch):
    from slam_recipes.configs import DataArguments
    from slam_recipes.training.arguments import PretrainConfig

    native = cpuinfo_native_bf16()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # as `accelerate launch` with a bf16 config sets it
    config = os.path.join(REPO, "recipes", recipe)
    *_, args = parse_recipe_args(
        (PretrainModelArguments, DataArguments, PretrainConfig), ["--config", config, "--use_cpu", "true"]
    )
    assert (args.bf16, args.fp16) == (native, False)
    assert args.mixed_precision == ("bf16" if native else "no")
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == ("bf16" if native else "no")
    assert args.precision.requested == "bf16" and args.precision.chosen == ("bf16" if native else "fp32")

    forced = parse_recipe_args(
        (PretrainModelArguments, DataArguments, PretrainConfig),
        ["--config", config, "--use_cpu", "true", "--bf16_native_only", "false"],
    )[-1]
    assert forced.bf16 and forced.precision.chosen == "bf16"


def test_dpo_recipe_falls_back_too():
    native = cpuinfo_native_bf16()
    config = os.path.join(REPO, "recipes", "demo", "dpo.yaml")
    *_, args = parse_recipe_args((ModelArguments, PreferenceDataArguments, SlamDPOConfig), ["--config", config])
    assert args.bf16 == native and args.precision.chosen == ("bf16" if native else "fp32")


def test_speech_lm_loads_in_the_chosen_dtype(tiny_unit_lm_dir):
    from slam_recipes.modeling.unit_lm import load_speech_lm

    native = cpuinfo_native_bf16()
    model = load_speech_lm(tiny_unit_lm_dir, 500, dtype="bfloat16", device="cpu")
    assert model.dtype == (torch.bfloat16 if native else torch.float32)
    forced = load_speech_lm(tiny_unit_lm_dir, 500, dtype="bfloat16", bf16_native_only=False, device="cpu")
    assert forced.dtype == torch.bfloat16
