"""The pretraining recipe end to end, through the script users run."""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, reference_pair_score, run_recipe, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from slam_recipes.evaluation.likelihood import load_benchmarks
from slam_recipes.units import build_unit_tokenizer

SCRIPT = os.path.join(REPO, "recipes", "pretrain.py")
DEMO = os.path.join(REPO, "recipes", "demo", "pretrain.yaml")


def run_pretraining(*args):
    """The recipe with the demo's config, in this process (conftest.run_recipe)."""
    return run_recipe(SCRIPT, "--config", DEMO, "--disable_tqdm", "true", *args)


def log_history(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return json.load(f)["log_history"]


def test_tiny_pretraining_run_learns_and_loads_without_this_package(tmp_path):
    out = tmp_path / "run"
    result = run_pretraining(
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "8",
        "--max_pairs",
        "40",
        "--max_steps",
        "60",
        "--logging_steps",
        "10",
        "--eval_steps",
        "30",
        "--save_steps",
        "30",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    history = log_history(out)
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert losses[-1] < 0.6 * losses[0], losses  # the model learns the corpus' structure
    assert evals[-1] < evals[0], evals
    scored = [h for h in history if "eval_swuggy" in h]  # the demo recipe's benchmarks, at each evaluation
    assert [h["step"] for h in scored] == [30, 60]
    logged = [h for h in history if "loss" in h]
    assert logged[-1]["num_input_tokens_seen"] > 0 and logged[-1]["tokens_per_second"] > 0

    # The folder is a plain transformers model + tokenizer.
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.vocab_size == 502
    assert tokenizer("<Un17><Un5>").input_ids == [19, 7]

    # The scores logged at the last evaluation are those of the saved model, scored a second way: each sequence
    # alone (conftest.reference_pair_score). Under bf16 autocast, batching and padding may flip a near-tie: 2 pairs.
    with open(DEMO) as f:
        specs = yaml.safe_load(f)["benchmarks"]
    with open(out / "run_summary.json") as f:
        bf16 = json.load(f)["hardware"]["precision"] == "bf16"
    for name, benchmark in load_benchmarks(specs, 500, max_pairs=40).items():
        expected = reference_pair_score(model, benchmark, autocast_dtype=torch.bfloat16 if bf16 else None)
        slack = (2 if bf16 else 0) * 100 / len(benchmark) + 0.006  # logged to 2 decimals
        assert abs(scored[-1][f"eval_{name}"] - expected) <= slack, (name, scored[-1], expected)

    # Greedy generation equals step-by-step argmax over full forward passes.
    ids = [1, 19, 7]
    generated = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0].tolist()
    with torch.no_grad():
        for _ in range(8):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            if ids[-1] == model.config.eos_token_id:
                break
    assert generated == ids


def test_time_budget_ends_the_run(tmp_path, caplog):
    out = tmp_path / "budget"
    with caplog.at_level("INFO", logger="slam_recipes"):
        result = run_pretraining(
            "--output_dir",
            str(out),
            "--max_steps",
            "-1",
            "--num_train_epochs",
            "50",
            "--time_budget",
            "6",
            "--logging_steps",
            "1",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Time budget 0:00:06 reached" in caplog.text
    history = log_history(out)
    steps = history[-1]["step"]
    assert 1 < steps < 50 * 20  # stopped by the budget, long before the epochs ran out
    lrs = [h["learning_rate"] for h in history if "learning_rate" in h]
    assert lrs[-1] < 0.1 * max(lrs)  # the schedule was fitted to the budget: near its floor at the end
    assert os.path.isfile(out / "model.safetensors")


# -- bad input: one line, exit code 2, nothing written -----------------------------------------------------------------
def run_in_process(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", [SCRIPT, "--config", DEMO, *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(SCRIPT, run_name="__main__")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return exit_info.value.code, lines


@pytest.fixture
def bad_data(tmp_path):
    def make(rows):
        return write_jsonl(tmp_path / "bad.jsonl", rows)

    return make


@pytest.mark.parametrize(
    "case, message",
    [
        ("unit_id", r"bad.jsonl row 1: unit id 500 outside \[0, 500\)"),
        ("empty_row", r"bad.jsonl row 0: empty unit sequence"),
        ("missing_column", r"bad.jsonl: no unit column"),
        ("unknown_column", r"bad.jsonl: missing column 'codes'"),
        ("budget", r"time_budget '1 day' is malformed"),
        ("vocab", r"tokenizer/model vocabulary mismatch: tokenizer has 302 tokens, model vocab_size is 502"),
        ("unknown_flag", r"not used by the HfArgumentParser"),
        ("negative_id", r"bad.jsonl row 1: unit id -1 outside \[0, 500\)"),
        ("string_units", r"bad.jsonl: column 'units' holds lists of string; expected integer lists or <UnK> strings"),
        (
            "held_run",
            r"already holds a run \(run_summary.json, trainer_state.json\); pass --overwrite_output_dir true",
        ),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(monkeypatch, capsys, tmp_path, bad_data, case, message):
    out = tmp_path / "out"
    args = ["--output_dir", str(out)]
    if case == "unit_id":
        args += ["--dataset_name", bad_data([{"units": [1, 2]}, {"units": [3, 500]}]), "--validation_split", ""]
    elif case == "empty_row":
        args += ["--dataset_name", bad_data([{"units": []}]), "--validation_split", ""]
    elif case == "missing_column":
        args += ["--dataset_name", bad_data([{"text": "hi"}]), "--validation_split", ""]
    elif case == "unknown_column":
        args += ["--dataset_name", bad_data([{"units": [1]}]), "--validation_split", "", "--units_column", "codes"]
    elif case == "budget":
        args += ["--time_budget", "1 day"]
    elif case == "vocab":
        build_unit_tokenizer(300).save_pretrained(tmp_path / "tok300")
        args += ["--tokenizer_name_or_path", str(tmp_path / "tok300")]
    elif case == "unknown_flag":
        args += ["--lerning_rate", "1"]
    elif case == "negative_id":
        args += ["--dataset_name", bad_data([{"units": [1, 2]}, {"units": [3, -1]}]), "--validation_split", ""]
    elif case == "string_units":
        args += ["--dataset_name", bad_data([{"units": ["3", "49"]}]), "--validation_split", ""]
    elif case == "held_run":  # another run's output folder: left as it was
        out.mkdir()
        (out / "run_summary.json").write_text("{}")
        (out / "trainer_state.json").write_text("{}")
    code, lines = run_in_process(monkeypatch, capsys, *args)
    assert code == 2
    assert len(lines) == 1, lines
    assert re.search(message, lines[0]), lines[0]
    if case == "held_run":
        assert sorted(os.listdir(out)) == ["run_summary.json", "trainer_state.json"]
    else:
        assert not out.exists()


def test_unknown_yaml_key_exits_2_from_the_command_line(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(Path(DEMO).read_text() + "lerning_rate: 0.1\n")
    result = subprocess.run(
        [sys.executable, SCRIPT, "--config", str(recipe), "--output_dir", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {recipe}: unknown key(s) ['lerning_rate']"]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_pretraining_with_peft_trains_embeddings_and_saves_a_plain_model(tmp_path, tiny_unit_lm_dir):
    """LoRA pretraining from a known base (a saved tiny speech LM, loaded as the TWIST base: nothing to resize): the
    merged model's adapted linear layers and its trained-in-full embeddings differ from the base, and nothing else
    does (the norms have no adapter)."""
    out = tmp_path / "lora"
    result = run_pretraining(
        "--output_dir", str(out), "--model_name_or_path", tiny_unit_lm_dir, "--twist_init", "true",
        "--max_steps", "4", "--use_peft", "true", "--lora_r", "4", "--learning_rate", "1e-2",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / "adapter_config.json").exists()  # merged: loads with no peft code
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir).state_dict()
    assert merged.keys() == base.keys()
    changed = {name for name in base if not torch.equal(merged[name], base[name])}
    linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    adapted = {name for name in base if name.endswith(".weight") and name.split(".")[-2] in linear}
    assert len(adapted) == 7 * len({name.split(".")[2] for name in adapted}) > 0
    assert adapted <= changed and "model.embed_tokens.weight" in changed
    # nothing else: no norm, no bias (LoRA adapts the weights), the head only as the embeddings' tied twin or in full
    assert changed - adapted <= {"model.embed_tokens.weight", "lm_head.weight"}, changed - adapted


def test_lora_for_pretraining_trains_the_new_vocabulary(tiny_config_dir):
    from peft import get_peft_model

    from slam_recipes.modeling.unit_lm import build_peft_config, build_unit_lm
    from slam_recipes.training.arguments import PretrainModelArguments

    model = build_unit_lm(tiny_config_dir, twist_init=False)
    assert build_peft_config(PretrainModelArguments(), model, train_embeddings=True) is None  # no use_peft, no LoRA
    config = build_peft_config(PretrainModelArguments(use_peft=True, lora_r=4), model, train_embeddings=True)
    assert set(config.modules_to_save) == {"embed_tokens", "lm_head"}
    assert config.r == 4 and config.target_modules == "all-linear"  # this package's default, not PEFT's per-model one
    peft_model = get_peft_model(model, config)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("embed_tokens" in n for n in trainable) and any("lora_A" in n for n in trainable)
    assert not any("mlp.up_proj.base_layer" in n for n in trainable)  # the transformer itself stays frozen
