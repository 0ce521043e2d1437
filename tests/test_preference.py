"""Spoken preference data and the DPO recipe."""

import json
import os

import pytest
import torch
from conftest import REPO, TINY_CONFIGS, run_recipe, write_config, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from slam_recipes.errors import DataError
from slam_recipes.model import build_unit_lm, make_reference_model
from slam_recipes.preference import auto_bleu, build_preference_datasets, load_preference_dataset
from slam_recipes.trainer import UnitDPOTrainer
from slam_recipes.training_args import SlamDPOConfig
from slam_recipes.units import build_unit_tokenizer, units_to_string

SCRIPT = os.path.join(REPO, "recipes", "dpo.py")
DEMO = os.path.join(REPO, "recipes", "demo", "dpo.yaml")
PAIRS = [
    {"prompt": [3, 4], "chosen": [5, 6, 7], "rejected": [8], "prompt_text": "a man walks", "chosen_text": "to the door",
     "rejected_text": "the the"},
    {"prompt": [0], "chosen": [499], "rejected": [1, 2], "prompt_text": "she sings", "chosen_text": "a song",
     "rejected_text": "no"},
]  # fmt: skip


# -- auto-BLEU --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, n, expected",
    [
        ("the cat saw the cat", 2, 2 / 4),  # (the cat) ×2 of 4 bigrams
        ("a b a b a b", 2, 5 / 5),  # (a b) ×3, (b a) ×2: every bigram repeats
        ("one two three four", 2, 0.0),
        ("one", 2, 0.0),  # no bigram at all
        ("", 2, 0.0),  # an empty transcript (an empty continuation) scores 0, no error
        ("a b a", 1, 2 / 3),  # unigrams: a ×2 of 3
        ("The cat. the CAT!", 2, 2 / 3),  # case and punctuation are not words
        ("x y z x y z", 3, 2 / 4),  # (x y z) ×2 of 4 trigrams
    ],
)
def test_auto_bleu_hand_computed(text, n, expected):
    assert auto_bleu(text, n) == pytest.approx(expected)


# -- data ---------------------------------------------------------------------------------------------------------------
def expected_strings(pair):
    return (
        "<S>" + units_to_string(pair["prompt"]),
        units_to_string(pair["chosen"]) + "<S>",
        units_to_string(pair["rejected"]) + "<S>",
    )


@pytest.mark.parametrize("form", ["units", "audio_repr", "features"])
def test_every_input_form_gives_the_same_strings(tmp_path, form):
    def convert(units):
        if form == "audio_repr":
            return units_to_string(units)
        if form == "features":
            return {"units": units, "duration": [1] * len(units)}
        return units

    rows = [{**p, **{c: convert(p[c]) for c in ("prompt", "chosen", "rejected")}} for p in PAIRS]
    ds = load_preference_dataset([write_jsonl(tmp_path / "p.jsonl", rows)], num_units=500)
    got = [(r["prompt"], r["chosen"], r["rejected"]) for r in ds]
    assert got == [expected_strings(p) for p in PAIRS]
    assert ds["chosen_text"] == ["to the door", "a song"]  # text columns kept


def test_repetition_filter_and_its_errors(tmp_path):
    rows = [dict(PAIRS[0], chosen_text="to the door to the door")] + PAIRS[1:]  # auto-BLEU 0.6 → dropped
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    assert len(load_preference_dataset([path], num_units=500)) == 1
    assert len(load_preference_dataset([path], num_units=500, auto_bleu_threshold=0.7)) == 2
    assert len(load_preference_dataset([path], num_units=500, auto_bleu_filter=False)) == 2
    bare = write_jsonl(tmp_path / "bare.jsonl", [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in PAIRS])
    with pytest.raises(DataError, match=r"auto_bleu_filter needs text column\(s\) \['prompt_text', 'chosen_text'\]"):
        load_preference_dataset([bare], num_units=500)
    assert len(load_preference_dataset([bare], num_units=500, auto_bleu_filter=False)) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rejected": None}, r"missing preference column\(s\) \['rejected'\]"),
        ({"chosen": []}, r"column 'chosen' row 0: empty unit sequence"),
        ({"prompt": [3, 500]}, r"column 'prompt' row 0: unit id 500 outside \[0, 500\)"),
        ({"rejected": [-1]}, r"column 'rejected' row 0: unit id -1"),
    ],
)
def test_bad_pairs(tmp_path, change, message):
    row = {k: v for k, v in {**PAIRS[0], **change}.items() if v is not None}
    with pytest.raises(DataError, match=message):
        load_preference_dataset([write_jsonl(tmp_path / "p.jsonl", [row])], num_units=500, auto_bleu_filter=False)


def test_demo_pairs_split():
    train, evaluation = build_preference_datasets(
        [os.path.join(REPO, "data/demo/dpo")], num_units=500, validation_split="validation"
    )
    assert len(train) > 300 and len(evaluation) > 30
    assert all(p.startswith("<S><Un") and not p.endswith("<S>") for p in train["prompt"])


# -- what the trainer sees ------------------------------------------------------------------------------------------------
def tiny_trainer(tmp_path, **overrides):
    torch.manual_seed(0)
    model = build_unit_lm(write_config(tmp_path / "cfg", TINY_CONFIGS["qwen2"]), twist_init=False)
    model.config._name_or_path = ""  # built in memory: no path or Hub name to reload a reference from
    train, _ = build_preference_datasets(
        [os.path.join(REPO, "data/demo/dpo")], num_units=500, dataset_split="validation"
    )
    options = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, bf16=False, use_cpu=True,
        report_to="none", max_length=512, logging_steps=1, disable_tqdm=True, save_strategy="no",
    )  # fmt: skip
    options.update(overrides)
    args = SlamDPOConfig(**options)
    return UnitDPOTrainer(
        model=model,
        ref_model=make_reference_model(model),
        args=args,
        train_dataset=train,
        processing_class=build_unit_tokenizer(500),
    )


def test_batches_start_with_bos_and_completions_end_with_eos(tmp_path):
    trainer = tiny_trainer(tmp_path)
    first = trainer.train_dataset[0]
    assert first["prompt_ids"][0] == 1 and 1 not in first["prompt_ids"][1:]  # BOS, no EOS in the prompt
    assert first["chosen_ids"][-1] == 1 and first["rejected_ids"][-1] == 1  # EOS ends each completion
    for row in trainer.train_dataset:  # no unit string tokenized to nothing
        assert len(row["prompt_ids"]) > 1 and len(row["chosen_ids"]) > 1 and len(row["rejected_ids"]) > 1
        assert min(row["chosen_ids"][:-1] + row["rejected_ids"][:-1] + row["prompt_ids"][1:]) >= 2
    batch = next(iter(trainer.get_train_dataloader()))
    ids, completion = batch["input_ids"], batch["completion_mask"]
    assert (ids[:, 0] == 1).all()
    for row, mask in zip(ids, completion, strict=True):
        assert mask.sum() > 1
        assert row[mask.bool()][-1] == 1  # the last completion token is EOS


def test_dpo_trains_a_model_built_in_memory(tmp_path):
    trainer = tiny_trainer(tmp_path)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert any("loss" in h for h in trainer.state.log_history)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)  # every trainable parameter moved


# -- the recipe script -------------------------------------------------------------------------------------------------
def run_dpo(*args):
    return run_recipe(SCRIPT, "--config", DEMO, "--disable_tqdm", "true", *args)


def dpo_logs(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return [h for h in json.load(f)["log_history"] if "rewards/margins" in h]


def test_dpo_recipe_moves_margin_and_loss(tmp_path, tiny_unit_lm_dir):
    """40 pairs, several epochs: the policy must learn to prefer `chosen` (margin > 0, loss < log 2)."""
    out = tmp_path / "dpo"
    result = run_dpo(
        "--model_name_or_path", tiny_unit_lm_dir, "--output_dir", str(out), "--dataset_split", "validation",
        "--validation_split", "", "--eval_strategy", "no", "--max_steps", "30", "--learning_rate", "1e-3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    logs = dpo_logs(out)
    assert logs[0]["loss"] == pytest.approx(0.6931, abs=0.02)  # the policy starts equal to the reference
    last = logs[-3:]
    assert sum(h["rewards/margins"] for h in last) / 3 > 0
    assert sum(h["loss"] for h in last) / 3 < 0.6931
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == 502 and AutoTokenizer.from_pretrained(out)("<Un1>").input_ids == [3]


@pytest.mark.parametrize("peft_save", ["merged", "adapter"])
def test_dpo_with_peft_has_no_reference_copy(tmp_path, tiny_unit_lm_dir, peft_save):
    out = tmp_path / "peft"
    result = run_dpo(
        "--model_name_or_path", tiny_unit_lm_dir, "--output_dir", str(out), "--dataset_split", "validation",
        "--validation_split", "", "--eval_strategy", "no", "--max_steps", "3", "--use_peft", "true",
        "--lora_r", "4", "--peft_save", peft_save, "--logging_steps", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert dpo_logs(out)
    if peft_save == "merged":  # a plain model, loadable without peft
        assert not (out / "adapter_config.json").exists()
        assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 502
    else:
        assert (out / "adapter_config.json").exists()


def test_peft_trainer_uses_the_base_as_reference(tmp_path, tiny_unit_lm_dir):
    from peft import PeftModel

    from slam_recipes.model import build_lora_config

    model = build_unit_lm(tiny_unit_lm_dir)
    train, _ = build_preference_datasets(
        [os.path.join(REPO, "data/demo/dpo")], num_units=500, dataset_split="validation"
    )
    trainer = UnitDPOTrainer(
        model=model,
        args=SlamDPOConfig(output_dir=str(tmp_path / "o"), bf16=False, use_cpu=True, report_to="none", max_steps=1),
        train_dataset=train,
        processing_class=build_unit_tokenizer(500),
        peft_config=build_lora_config(model, r=4),
    )
    assert trainer.ref_model is None and isinstance(trainer.model, PeftModel)


@pytest.mark.parametrize("case", ["text_lm", "no_text", "missing_field"])
def test_dpo_bad_input(tmp_path, tiny_unit_lm_dir, tiny_text_lm_dir, case):
    out = tmp_path / "out"
    if case == "text_lm":
        args, message = ["--model_name_or_path", tiny_text_lm_dir], "has vocab_size 1000, the unit tokenizer has 502"
    elif case == "missing_field":  # preference rows without `rejected`
        rows = write_jsonl(tmp_path / "half.jsonl", [{k: p[k] for k in ("prompt", "chosen")} for p in PAIRS])
        args = ["--model_name_or_path", tiny_unit_lm_dir, "--dataset_name", rows, "--validation_split", ""]
        message = "missing preference column(s) ['rejected']"
    else:
        bare = write_jsonl(
            tmp_path / "bare.jsonl", [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in PAIRS]
        )
        args = ["--model_name_or_path", tiny_unit_lm_dir, "--dataset_name", bare, "--validation_split", ""]
        message = "auto_bleu_filter needs text column(s)"
    result = run_dpo("--output_dir", str(out), *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not out.exists()
