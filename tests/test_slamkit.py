"""Converting a slamkit checkpoint (slp-rl/slamkit's UnitLM, as slprl/slam is published) into a plain causal LM."""

import json
import os
import re
import runpy
import shutil
import sys

import pytest
import torch
from conftest import REPO, TINY_CONFIGS, run_recipe, write_config
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from slam_recipes.errors import ConfigError
from slam_recipes.modeling.slamkit import convert_slamkit_checkpoint

SCRIPT = os.path.join(REPO, "recipes", "convert_slamkit.py")
UNIT_IDS = torch.tensor([[1, 19, 7, 2, 501, 300, 42, 7]])


def make_slamkit_checkpoint(folder, *, dtype=torch.float32, layout="safetensors", tie=True):
    """A tiny UnitLM folder laid out as slamkit's `save_pretrained` writes it; returns (folder, the base LM).

    config.json: `model_type: speech_language_model`, the base LM's whole config under `base_config` (still with the
    text LM's vocab_size: slamkit resizes a copy of it), the unit vocabulary as the top-level `vocab_size`.
    Weights: the base LM's state dict under `lm.`, without the tied head.
    """
    base = {**TINY_CONFIGS["qwen2"], "tie_word_embeddings": tie, "pad_token_id": 0, "bos_token_id": 1}
    base.update(eos_token_id=1, rope_theta=10000.0, use_cache=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**{**base, "vocab_size": 502}), dtype=dtype).eval()
    config = {
        "architectures": ["UnitLM"],
        "base_config": {**base, "_name_or_path": "Qwen/Qwen2.5-0.5B", "torch_dtype": str(dtype).split(".")[1]},
        "base_model_name": "Qwen/Qwen2.5-0.5B",
        "max_position_embeddings": base["max_position_embeddings"],
        "model_type": "speech_language_model",
        "tie_word_embeddings": tie,
        "torch_dtype": str(dtype).split(".")[1],
        "transformers_version": "4.48.1",
        "trust_remote_code": None,
        "twist_init": True,
        "use_cache": False,
        "use_safetensors": None,
        "vocab_size": 502,
    }
    write_config(folder, config)
    state = {f"lm.{k}": v.clone() for k, v in model.state_dict().items() if not (tie and k == "lm_head.weight")}
    if layout == "safetensors":
        save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    elif layout == "bin":
        torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    else:  # sharded, as save_pretrained splits a large model
        stem, ext = ("model", "safetensors") if layout == "sharded" else ("pytorch_model", "bin")
        names = sorted(state)
        shards = {f"{stem}-00001-of-00002.{ext}": names[:5], f"{stem}-00002-of-00002.{ext}": names[5:]}
        for shard, keys in shards.items():
            if ext == "safetensors":
                save_file({k: state[k] for k in keys}, os.path.join(folder, shard), metadata={"format": "pt"})
            else:
                torch.save({k: state[k] for k in keys}, os.path.join(folder, shard))
        index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
        with open(os.path.join(folder, f"{stem}.{ext}.index.json"), "w") as f:
            json.dump(index, f)
    return str(folder), model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_slamkit_checkpoint(tmp_path_factory.mktemp("slamkit") / "slam")[0]


def check_converted(out, original, dtype):
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.dtype == dtype and model.config.vocab_size == 502
    assert (model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id) == (0, 1, 1)
    with torch.no_grad():
        assert torch.equal(model(UNIT_IDS).logits, original(UNIT_IDS).logits)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer("<Un17><Un5>").input_ids == [19, 7] and len(tokenizer) == 502
    # greedy generation continues as the original checkpoint does, by step-by-step argmax (a second path)
    generated = model.generate(UNIT_IDS[:, :3], max_new_tokens=4, do_sample=False, eos_token_id=None)
    ids = UNIT_IDS[:, :3]
    with torch.no_grad():
        for _ in range(4):
            ids = torch.cat([ids, original(ids).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(generated, ids)


# -- conversion --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conversion_keeps_logits_bit_for_bit(tmp_path, dtype):
    source, original = make_slamkit_checkpoint(tmp_path / "slam", dtype=dtype)
    summary = convert_slamkit_checkpoint(source, str(tmp_path / "out"))
    dtype_name = str(dtype).split(".")[1]
    assert summary | {"num_parameters": 0} == {
        "source": source,
        "output_dir": str(tmp_path / "out"),
        "model_type": "qwen2",
        "num_parameters": 0,
        "num_units": 500,
        "dtype": dtype_name,
    }
    assert summary["num_parameters"] == sum(p.numel() for p in original.parameters())
    check_converted(tmp_path / "out", original, dtype)
    assert sorted(os.listdir(tmp_path)) == ["out", "slam"]  # no temporary folder left behind


@pytest.mark.parametrize(
    "layout, tie", [("sharded", True), ("bin", True), ("sharded_bin", True), ("safetensors", False)]
)
def test_other_weight_layouts_and_untied_head(tmp_path, layout, tie):
    source, original = make_slamkit_checkpoint(tmp_path / "slam", layout=layout, tie=tie)
    convert_slamkit_checkpoint(source, str(tmp_path / "out"))
    check_converted(tmp_path / "out", original, torch.float32)


def test_dtype_option_casts(tmp_path, checkpoint):
    assert convert_slamkit_checkpoint(checkpoint, str(tmp_path / "out"), dtype="bfloat16")["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out").dtype == torch.bfloat16


def test_existing_output_dir_is_replaced_only_with_overwrite(tmp_path, checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        convert_slamkit_checkpoint(checkpoint, str(out))
    convert_slamkit_checkpoint(checkpoint, str(out), overwrite=True)
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_failed_write_leaves_nothing(tmp_path, checkpoint, monkeypatch):
    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    monkeypatch.setattr("slam_recipes.units.build_unit_tokenizer", lambda num_units: BrokenTokenizer())
    with pytest.raises(OSError, match="disk full"):
        convert_slamkit_checkpoint(checkpoint, str(tmp_path / "parent" / "out"))
    assert os.listdir(tmp_path / "parent") == []


def test_output_dir_may_not_replace_the_source(checkpoint):
    with pytest.raises(ConfigError, match="would replace the source checkpoint"):
        convert_slamkit_checkpoint(checkpoint, os.path.dirname(checkpoint), overwrite=True)


@pytest.mark.parametrize(
    "source, message",
    [
        ("slprl/no-such-slam-checkpoint", "not a local folder and cannot be fetched from the Hub"),
        ("/no/such/folder", "/no/such/folder: no such folder"),
    ],
)
def test_unreachable_source_is_one_line(tmp_path, source, message):
    with pytest.raises(ConfigError, match=message) as info:
        convert_slamkit_checkpoint(source, str(tmp_path / "out"))
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


# -- the script --------------------------------------------------------------------------------------------------------
def test_script_converts(tmp_path, checkpoint):
    out = tmp_path / "out"
    args = ["--model_name_or_path", checkpoint, "--output_dir", str(out)]
    result = run_recipe(SCRIPT, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "over 500 units (float32)" in result.stdout
    assert f'AutoModelForCausalLM.from_pretrained("{out}")' in result.stdout
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def _edit_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        config = json.load(f)
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    with open(path, "w") as f:
        json.dump(config, f)


def _edit_weights(folder, edit):
    from safetensors.torch import load_file

    path = os.path.join(folder, "model.safetensors")
    state = edit(load_file(path))
    os.remove(path)
    if state is not None:
        save_file(state, path)


def _tokeniser_config(folder, **values):
    with open(os.path.join(folder, "tokeniser_config.json"), "w") as f:
        json.dump({"dedup": True, "bos_eos_token_id": 1, "pad_token_id": 0, "load_fe": False, **values}, f)


BAD_LAYOUTS = {
    "no_config": (lambda d: os.remove(os.path.join(d, "config.json")), r"{d}: no config\.json$"),
    "wrong_model_type": (
        lambda d: _edit_config(d, model_type="qwen2"),
        r"{d}/config\.json: model_type is 'qwen2', expected 'speech_language_model' \(a slamkit UnitLM checkpoint\)$",
    ),
    "no_base_config": (lambda d: _edit_config(d, base_config=None), r"{d}/config\.json: no base_config"),
    "no_weights": (
        lambda d: _edit_weights(d, lambda s: None),
        r"{d}: no weights \(model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin or ",
    ),
    "no_prefix": (
        lambda d: _edit_weights(d, lambda s: {k.removeprefix("lm."): v for k, v in s.items()}),
        r"{d}: weights are not under the 'lm\.' prefix \(first key: ",
    ),
    "missing_weight": (
        lambda d: _edit_weights(d, lambda s: {k: v for k, v in s.items() if k != "lm.model.norm.weight"}),
        r"{d}: 1 weights missing for the base qwen2 model, e.g\. model\.norm\.weight$",
    ),
    "unexpected_weight": (
        lambda d: _edit_weights(d, lambda s: {**s, "lm.model.extra.weight": torch.zeros(2)}),
        r"{d}: 1 unexpected weights for the base qwen2 model, e\.g\. model\.extra\.weight$",
    ),
    "untied_head_differs": (
        lambda d: _edit_weights(d, lambda s: {**s, "lm.lm_head.weight": torch.zeros(502, 32)}),
        r"{d}: lm_head\.weight and model\.embed_tokens\.weight differ, but the config ties them$",
    ),
    "vocab_mismatch": (
        lambda d: _edit_config(d, vocab_size=1002),
        r"{d}: model\.embed_tokens\.weight has 502 rows, but config\.json has vocab_size 1002",
    ),
    "special_ids": (
        lambda d: _edit_config(d, base_config={**TINY_CONFIGS["qwen2"], "bos_token_id": 151643}),
        r"{d}/config\.json: base_config bos_token_id is 151643, the unit layout has 1",
    ),
    "tokeniser_num_units": (
        lambda d: _tokeniser_config(d, num_units=200),
        r"{d}/tokeniser_config\.json: num_units is 200, but {d}/config\.json has vocab_size 502 \(500 units\)$",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LAYOUTS))
def test_bad_layout_is_one_line_error_and_writes_nothing(tmp_path, checkpoint, monkeypatch, capsys, case):
    source = shutil.copytree(checkpoint, tmp_path / "slam")
    damage, pattern = BAD_LAYOUTS[case]
    damage(str(source))
    monkeypatch.setattr(
        sys, "argv", [SCRIPT, "--model_name_or_path", str(source), "--output_dir", str(tmp_path / "o")]
    )
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(SCRIPT, run_name="__main__")
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert re.match(pattern.format(d=re.escape(str(source))), lines[0].removeprefix("error: ")), lines[0]
    assert not (tmp_path / "o").exists()


def test_num_units_option_is_checked(tmp_path, checkpoint):
    with pytest.raises(ConfigError, match=r"vocab_size 502 holds 500 units, expected num_units=1000"):
        convert_slamkit_checkpoint(checkpoint, str(tmp_path / "out"), num_units=1000)
    assert convert_slamkit_checkpoint(checkpoint, str(tmp_path / "out"), num_units=500)["num_units"] == 500
