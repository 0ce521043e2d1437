"""Spoken preference data and the DPO recipe."""

import json
import os

import pytest
import torch
from conftest import REPO, TINY_CONFIGS, run_recipe, write_config, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from slam_recipes.errors import ConfigError, DataError
from slam_recipes.evaluation.metrics import auto_bleu, auto_bleu_words
from slam_recipes.modeling.unit_lm import build_unit_lm, make_reference_model
from slam_recipes.preference.pairs import build_preference_datasets, load_preference_dataset
from slam_recipes.training.arguments import SlamDPOConfig
from slam_recipes.training.trainer import UnitDPOTrainer
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
    "text, n, tokenizer, expected",
    [
        ("the cat saw the cat", 2, "nltk", 2 / 4),  # (the cat) ×2 of 4 bigrams
        ("a b a b a b", 2, "nltk", 5 / 5),  # (a b) ×3, (b a) ×2: every bigram repeats
        ("one two three four", 2, "nltk", 0.0),
        ("one", 2, "nltk", 0.0),  # no bigram at all
        ("", 2, "nltk", 0.0),  # an empty transcript (an empty continuation) scores 0, no error
        ("a b a", 1, "nltk", 2 / 3),  # unigrams: a ×2 of 3
        ("x y z x y z", 3, "nltk", 2 / 4),  # (x y z) ×2 of 4 trigrams
        # The paper's words (NLTK): case and punctuation are kept, a mid-text full stop stays on its word.
        ("The dog ran. the dog sat.", 2, "nltk", 0.0),  # The dog | dog ran. | ran. the | the dog | dog sat | sat .
        ("The dog ran. the dog sat.", 2, "normalized", 2 / 5),  # the dog ×2 of 5
        ("Go, go, go home!", 2, "nltk", 2 / 6),  # Go , | , go | go , | , go | go home | home !: (, go) ×2
        ("Go, go, go home!", 2, "normalized", 2 / 3),  # go go | go go | go home
        ("I can't, I can't.", 2, "nltk", 4 / 7),  # I ca | ca n't | n't , | , I | I ca | ca n't | n't .
        ("I can't, I can't.", 2, "normalized", 2 / 3),  # i can't | can't i | i can't
        ("The cat. the CAT!", 2, "normalized", 2 / 3),  # the cat | cat the | the cat
    ],
)
def test_auto_bleu_hand_computed(text, n, tokenizer, expected):
    assert auto_bleu(text, n, tokenizer) == pytest.approx(expected)


def test_auto_bleu_words_are_nltks_by_default():
    assert auto_bleu_words("The dog ran. the dog sat.") == ["The", "dog", "ran.", "the", "dog", "sat", "."]
    assert auto_bleu_words("I can't, I can't.", "normalized") == ["i", "can't", "i", "can't"]


def test_auto_bleu_bad_options_are_one_line_config_errors(tmp_path):
    with pytest.raises(
        ConfigError, match="auto_bleu_tokenizer must be one of \\('nltk', 'normalized'\\), got 'spacy'"
    ):
        auto_bleu("a b", 2, "spacy")
    with pytest.raises(ConfigError, match="auto_bleu_n must be at least 1, got 0"):
        auto_bleu("a b", 0)
    path = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    with pytest.raises(ConfigError, match="auto_bleu_tokenizer must be .* got 'words'"):
        build_preference_datasets([path], num_units=500, auto_bleu_tokenizer="words")


def reference_auto_bleu(words: list[str], n: int) -> float:
    """The definition read literally: the share of n-gram positions i whose n-gram equals the one at some j != i."""
    grams = [words[i : i + n] for i in range(len(words) - n + 1)]
    repeated = [any(grams[j] == grams[i] for j in range(len(grams)) if j != i) for i in range(len(grams))]
    return sum(repeated) / len(grams) if grams else 0.0


def test_demo_filter_keeps_what_the_papers_definition_keeps():
    """The demo pairs the filter keeps are those whose prompt_text + " " + chosen_text scores < 0.3 under the
    definition read literally, words from NLTK's tokenizer (slamkit's); the normalized words keep fewer of them."""
    import pyarrow.parquet as pq
    from nltk.tokenize import NLTKWordTokenizer

    rows = pq.read_table(os.path.join(REPO, "data/demo/dpo/validation.parquet")).to_pylist()
    words = NLTKWordTokenizer()
    expected = [
        r["prompt_text"]
        for r in rows
        if reference_auto_bleu(words.tokenize(f"{r['prompt_text']} {r['chosen_text']}"), 2) < 0.3
    ]
    kept = load_preference_dataset([os.path.join(REPO, "data/demo/dpo")], num_units=500, split="validation")
    assert kept["prompt_text"] == expected
    normalized = load_preference_dataset(
        [os.path.join(REPO, "data/demo/dpo")], num_units=500, split="validation", auto_bleu_tokenizer="normalized"
    )
    assert len(normalized) < len(expected) < len(rows)  # the two word splits disagree on these pairs


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
    # Repetitive only once case and punctuation are dropped: the paper's (NLTK) words keep it, normalized drops it.
    cased = write_jsonl(
        tmp_path / "cased.jsonl", [dict(PAIRS[0], prompt_text="The dog ran.", chosen_text="the dog sat.")]
    )
    assert len(load_preference_dataset([cased], num_units=500)) == 1
    assert len(load_preference_dataset([cased], num_units=500, auto_bleu_tokenizer="normalized")) == 0
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
    base = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir)
    if peft_save == "merged":  # a plain model, loadable without peft
        assert not (out / "adapter_config.json").exists()
        tuned = AutoModelForCausalLM.from_pretrained(out)
    else:  # the adapters, loaded onto the base they were trained on, then merged by peft itself
        from peft import PeftModel

        assert (out / "adapter_config.json").exists()
        tuned = PeftModel.from_pretrained(base, out).merge_and_unload()
        base = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir)
    tuned, base = tuned.state_dict(), base.state_dict()
    changed = {name for name in base if not torch.equal(tuned[name], base[name])}
    linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    adapted = {name for name in base if name.endswith(".weight") and name.split(".")[-2] in linear}
    # every adapted linear layer moved, and nothing else (DPO keeps the embeddings, the head and the norms)
    assert adapted and changed == adapted, changed ^ adapted


def test_peft_trainer_uses_the_base_as_reference(tmp_path, tiny_unit_lm_dir):
    from peft import PeftModel

    from slam_recipes.modeling.unit_lm import build_peft_config
    from slam_recipes.training.arguments import ModelArguments

    model = build_unit_lm(tiny_unit_lm_dir)
    train, _ = build_preference_datasets(
        [os.path.join(REPO, "data/demo/dpo")], num_units=500, dataset_split="validation"
    )
    trainer = UnitDPOTrainer(
        model=model,
        args=SlamDPOConfig(output_dir=str(tmp_path / "o"), bf16=False, use_cpu=True, report_to="none", max_steps=1),
        train_dataset=train,
        processing_class=build_unit_tokenizer(500),
        peft_config=build_peft_config(ModelArguments(use_peft=True, lora_r=4)),
    )
    assert trainer.ref_model is None and isinstance(trainer.model, PeftModel)


@pytest.mark.parametrize("case", ["text_lm", "no_text", "missing_field", "auto_bleu_tokenizer"])
def test_dpo_bad_input(tmp_path, tiny_unit_lm_dir, tiny_text_lm_dir, case):
    out = tmp_path / "out"
    if case == "auto_bleu_tokenizer":
        args = ["--model_name_or_path", tiny_unit_lm_dir, "--auto_bleu_tokenizer", "spacy"]
        message = "auto_bleu_tokenizer must be one of ('nltk', 'normalized'), got 'spacy'"
    elif case == "text_lm":
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
