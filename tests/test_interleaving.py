"""Speech–text interleaving (SIMS, arXiv 2504.02398): the extended vocabulary of a text LM, the choice of spoken
spans, and interleaved token ids, against hand-computed sequences and the plain tokenizer's reading of their text
form."""

import numpy as np
import pytest
import torch

from slam_recipes.data.interleaving import (
    choose_speech_words,
    interleave,
    interleave_dataset,
    speech_only_dataset,
    text_only_dataset,
)
from slam_recipes.errors import ConfigError, DataError
from slam_recipes.modeling.interleaved import InterleavedVocab, extend_text_lm, extend_tokenizer
from slam_recipes.units import SPEECH_MARKER, TEXT_MARKER


# -- choosing the spoken words ----------------------------------------------------------------------------------------
def runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()


def test_spoken_spans_cover_the_fraction_with_poisson_lengths():
    """Over 300 utterances of 200 words, λ = 10, fraction 0.3: each covers at least ceil(0.3 · 200) = 60 words and at
    most 60 plus one span's overshoot; spans average about λ words (runs can join two spans, so a little over 10); the
    same seed chooses the same words."""
    covered, lengths = [], []
    for seed in range(300):
        mask = choose_speech_words(200, np.random.default_rng(seed))
        assert np.array_equal(mask, choose_speech_words(200, np.random.default_rng(seed)))
        covered.append(int(mask.sum()))
        lengths += runs(mask)
    assert min(covered) >= 60 and np.mean(covered) < 70
    assert 9.0 <= np.mean(lengths) <= 13.0
    assert not choose_speech_words(20, np.random.default_rng(0), fraction=0.0).any()
    # With fraction 1 every word is spoken but those right after a span, where no span may start (as published).
    every = choose_speech_words(20, np.random.default_rng(0), fraction=1.0)
    assert every.sum() >= 15 and all(every[i - 1] for i in np.flatnonzero(~every))
    assert choose_speech_words(0, np.random.default_rng(0)).shape == (0,)


# -- interleaving one utterance ---------------------------------------------------------------------------------------
# Units 5 6 7 8 9 with run lengths 2 1 3 2 2 frames of 40 ms: 5 covers 0-80 ms, 6 80-120, 7 120-240, 8 240-320,
# 9 320-400. Words: a 0-100 ms, b 120-200, c 250-300, d 330-400.
UNITS, DURATIONS = [5, 6, 7, 8, 9], [2, 1, 3, 2, 2]
WORDS = [
    {"word": "a", "start_time": 0.00, "end_time": 0.10},
    {"word": "b", "start_time": 0.12, "end_time": 0.20},
    {"word": "c", "start_time": 0.25, "end_time": 0.30},
    {"word": "d", "start_time": 0.33, "end_time": 0.40},
]
SPEECH, TEXT = 1, 2


def ids_of(spoken, words=WORDS):
    return interleave(
        UNITS, DURATIONS, words, np.asarray(spoken), frame_seconds=0.04, unit_ids=lambda u: u + 100,
        speech_id=SPEECH, text_id=TEXT, encode_text=lambda text: [ord(ch) for ch in text], where="row 3",
    )  # fmt: skip


def test_spoken_words_become_the_units_heard_during_them():
    # b (120-200 ms) overlaps unit 7 only (6 ends at 120); d (330-400) overlaps 9 only.
    assert ids_of([False, True, False, True]) == [TEXT, ord("a"), SPEECH, 107, TEXT, ord("c"), SPEECH, 109]
    # a and b together (0-200 ms): units 5, 6, 7; c and d as text, joined by a space.
    assert ids_of([True, True, False, False]) == [SPEECH, 105, 106, 107, TEXT, ord("c"), ord(" "), ord("d")]
    assert ids_of([True] * 4) == [SPEECH, 105, 106, 107, 108, 109]
    assert ids_of([False] * 4) == [TEXT, *map(ord, "a b c d")]


def test_an_alignment_that_does_not_fit_is_a_one_line_error():
    late = [*WORDS[:3], {"word": "d", "start_time": 0.33, "end_time": 0.60}]  # the audio is 0.40 s
    with pytest.raises(DataError, match=r"row 3: word 3 'd' at 0.330-0.600 s is outside the audio's 0-0.400 s"):
        ids_of([False] * 4, late)
    silent = [*WORDS, {"word": "e", "start_time": 0.40, "end_time": 0.40}]  # after the last unit
    with pytest.raises(DataError, match=r"row 3: words 4-4 \('e', 0.400-0.400 s\) have no units"):
        ids_of([False] * 4 + [True], silent)


# -- the extended vocabulary ------------------------------------------------------------------------------------------
def test_a_text_lm_gains_units_and_markers_that_plain_transformers_loads(tiny_text_lm_with_tokenizer, tmp_path):
    """The tokenizer keeps its 258 tokens and gains <Un0>…<Un19>, <speech>, <text> at ids 258-279; the embeddings
    grow to 280 rows, the new ones at the old rows' mean (covariance × 1e-9); saved, both load with plain
    AutoModelForCausalLM / AutoTokenizer and read the interleaved text form as those ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_text_lm_with_tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    old_rows = model.get_input_embeddings().weight.detach().clone()
    text_ids = tokenizer("the cat", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    vocab = extend_text_lm(model, tokenizer, num_units=20)
    assert vocab == InterleavedVocab(first_unit_id=258, num_units=20, speech_id=278, text_id=279)
    rows = model.get_input_embeddings().weight.detach()
    assert rows.shape[0] == len(tokenizer) == 280 and torch.equal(rows[:258], old_rows)
    assert torch.allclose(rows[258:], old_rows.mean(0).expand(22, -1), atol=1e-4)
    model.save_pretrained(tmp_path / "sims")
    tokenizer.save_pretrained(tmp_path / "sims")
    loaded, reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "sims"), AutoTokenizer.from_pretrained(tmp_path / "sims")  # fmt: skip
    assert torch.equal(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert InterleavedVocab.of(reloaded, 20) == vocab
    ids = reloaded(f"{SPEECH_MARKER}<Un3><Un19>{TEXT_MARKER}the cat", add_special_tokens=False)["input_ids"]
    assert ids == [278, 261, 277, 279, *text_ids]
    with pytest.raises(ConfigError, match="already has unit or marker tokens"):
        extend_tokenizer(reloaded, 20)


def test_a_base_that_cannot_be_loaded_or_does_not_match_is_a_one_line_error(tiny_text_lm_with_tokenizer, tmp_path):
    """build_interleaved_lm names the model: a missing folder, a folder without weights (pretrained), and an
    interleaved checkpoint whose units are not num_units (its own message, not "already has unit tokens")."""
    import shutil

    from transformers import AutoTokenizer

    from slam_recipes.modeling.interleaved import build_interleaved_lm

    with pytest.raises(ConfigError, match=r"nope: no such folder$"):
        build_interleaved_lm(str(tmp_path / "nope"), num_units=20)
    no_weights = tmp_path / "config-only"
    shutil.copytree(tiny_text_lm_with_tokenizer, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ConfigError, match=r"config-only: cannot load the model: .*model\.safetensors"):
        build_interleaved_lm(str(no_weights), num_units=20)
    model, tokenizer, _ = build_interleaved_lm(str(no_weights), num_units=20, pretrained=False)  # random init: fine
    model.save_pretrained(tmp_path / "sims")
    tokenizer.save_pretrained(tmp_path / "sims")
    assert len(AutoTokenizer.from_pretrained(tmp_path / "sims")) == 280
    with pytest.raises(ConfigError, match=r"sims: the tokenizer has more unit tokens than num_units \(10\)"):
        build_interleaved_lm(str(tmp_path / "sims"), num_units=10)


def test_rows_beyond_the_tokenizer_are_dropped_before_the_new_ones_are_added(tiny_text_lm_with_tokenizer):
    """A matrix padded past its tokenizer (as Qwen2.5's 151,936 rows for 151,665 tokens): the added tokens get
    mean-resized rows, not the old padding rows, and the matrix ends at the tokenizer's length."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    config = AutoConfig.from_pretrained(tiny_text_lm_with_tokenizer, vocab_size=300)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.get_input_embeddings().weight[258:] = 50.0  # padding rows far from the real ones
    real_mean = model.get_input_embeddings().weight[:258].detach().mean(0)
    extend_text_lm(model, tokenizer, num_units=20)
    rows = model.get_input_embeddings().weight.detach()
    assert rows.shape[0] == 280
    assert torch.allclose(rows[258:], real_mean.expand(22, -1), atol=1e-4)


def test_a_dataset_is_interleaved_reproducibly_and_reads_as_its_text_form(tiny_text_lm_with_tokenizer):
    """Each row: BOS, the interleaved ids, EOS; the same seed gives the same rows; and the ids equal what the plain
    tokenizer gives for the text form built by hand from the chosen words (second code path)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    vocab = extend_tokenizer(tokenizer, 20)
    rng = np.random.default_rng(0)
    rows = {"units": [], "duration": [], "aligned_text": []}
    for n_words in (12, 30, 7):
        durations = rng.integers(1, 4, size=4 * n_words)
        rows["units"].append(rng.integers(0, 20, size=len(durations)).tolist())
        rows["duration"].append(durations.tolist())
        frames = np.concatenate([[0], np.cumsum(durations)])[::4] * 0.04  # every word spans 4 units
        rows["aligned_text"].append([{"word": f"w{k}", "start_time": float(frames[k]), "end_time": float(frames[k + 1])}
                                     for k in range(n_words)])  # fmt: skip
    dataset = Dataset.from_dict(rows)
    first = list(interleave_dataset(dataset, tokenizer, vocab, frame_rate=25, seed=7, fraction=0.5)["input_ids"])
    again = list(interleave_dataset(dataset, tokenizer, vocab, frame_rate=25, seed=7, fraction=0.5)["input_ids"])
    assert first == again
    other = interleave_dataset(dataset, tokenizer, vocab, frame_rate=25, seed=8, fraction=0.5)["input_ids"]
    assert first != list(other)
    for index, ids in enumerate(first):
        spoken = choose_speech_words(len(rows["aligned_text"][index]), np.random.default_rng([7, index]), fraction=0.5)
        words, units = rows["aligned_text"][index], rows["units"][index]
        text, k = "", 0
        while k < len(words):  # each word is units[4k : 4k + 4]
            m = k
            while m < len(words) and spoken[m] == spoken[k]:
                m += 1
            if spoken[k]:
                text += SPEECH_MARKER + "".join(f"<Un{u}>" for u in units[4 * k : 4 * m])
            else:
                text += TEXT_MARKER + " ".join(w["word"] for w in words[k:m])
            k = m
        assert ids == [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]  # fmt: skip
    with pytest.raises(DataError, match="interleaving needs column"):
        interleave_dataset(dataset.remove_columns("duration"), tokenizer, vocab, frame_rate=25)


def test_speech_only_and_text_only_rows_have_no_marker(tiny_text_lm_with_tokenizer):
    """As in slamkit: markers open the runs of interleaved rows; single-modality rows are plain units or text."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    vocab = extend_tokenizer(tokenizer, 20)
    speech = speech_only_dataset(Dataset.from_dict({"units": [[3, 19, 0]], "file": ["a.wav"]}), tokenizer, vocab)
    assert speech["input_ids"] == [[0, 261, 277, 258, 1]]  # <s> <Un3> <Un19> <Un0> </s>
    text = text_only_dataset(Dataset.from_dict({"text": ["hi there"], "id": [4]}), tokenizer)
    assert text["input_ids"] == [[0, *tokenizer("hi there", add_special_tokens=False)["input_ids"], 1]]
    with pytest.raises(DataError, match="a text-only source needs a 'text' column"):
        text_only_dataset(Dataset.from_dict({"story": ["x"]}), tokenizer)


def test_sources_are_read_by_their_columns_cut_to_the_context_and_mixed(tiny_text_lm_with_tokenizer, tmp_path):
    """An sTinyStories-like source (units, duration, aligned_text) is interleaved, a units-only one gives speech-only
    rows, a text one text-only rows; rows longer than the context are cut; the project's mixture samples them by
    ratio; a source of no kind is a one-line error naming it."""
    from conftest import write_jsonl
    from transformers import AutoTokenizer

    from slam_recipes.data.interleaving import load_interleaved_datasets

    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    vocab = extend_tokenizer(tokenizer, 20)
    words = [
        {"word": w, "start_time": 0.16 * k, "end_time": 0.16 * (k + 1)}
        for k, w in enumerate(["a", "b", "c", "d", "e"])
    ]
    stories = write_jsonl(tmp_path / "stories.jsonl", [
        {"units": list(range(20)), "duration": [1] * 20, "aligned_text": words, "text": "a b c d e"}] * 40)  # fmt: skip
    speech = write_jsonl(tmp_path / "speech.jsonl", [{"units": [1, 2, 3], "file": "x.wav"}] * 40)
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "hello world, " * 5}] * 40)
    common = dict(tokenizer=tokenizer, vocab=vocab, frame_rate=25, context_length=16)
    alone = [list(load_interleaved_datasets([source], **common)["input_ids"]) for source in (stories, speech, text)]
    assert list(load_interleaved_datasets([stories, speech, text], **common)["input_ids"]) == sum(alone, [])
    story_rows, speech_rows, text_rows = alone
    unit_ids = set(range(vocab.first_unit_id, vocab.first_unit_id + 20))
    assert speech_rows == [[0, 259, 260, 261, 1]] * 40  # <s> <Un1> <Un2> <Un3> </s>
    assert all(len(r) <= 16 for rows in alone for r in rows)
    assert not any(unit_ids & set(r) for r in text_rows) and len(text_rows) >= 40 * 5  # ~70 tokens: 5 rows each
    flat = [token for r in story_rows for token in r]  # the 40 stories, cut at 16 tokens
    assert flat.count(0) == 40 and unit_ids & set(flat) and (vocab.text_id in flat or vocab.speech_id in flat)
    mixed = load_interleaved_datasets([stories, speech, text], ratios=[0.54, 0.25, 0.2], **common)
    assert len(mixed) > 0
    write_jsonl(tmp_path / "other.jsonl", [{"story": "x"}])
    with pytest.raises(DataError, match=r"other.jsonl.*neither units \(speech\)"):
        load_interleaved_datasets([str(tmp_path / "other.jsonl")], **common)


BAD_UNITS = [
    ({"units": [3, 20, 4]}, r"bad.jsonl row 2: unit id 20 outside \[0, 20\)"),  # 20 would be <speech>
    ({"units": [3, 700, 4]}, r"bad.jsonl row 2: unit id 700 outside \[0, 20\)"),  # past the embeddings
    ({"units": []}, r"bad.jsonl row 2: empty unit sequence"),
]
BAD_ALIGNMENTS = [
    ({"aligned_text": None}, r"bad.jsonl row 2: no aligned words \(aligned_text is null\)"),
    ({"aligned_text": []}, r"bad.jsonl row 2: no aligned words \(aligned_text is empty\)"),
]


@pytest.mark.parametrize(
    "kind, row, message",
    [("interleaved", *case) for case in BAD_UNITS + BAD_ALIGNMENTS] + [("speech", *case) for case in BAD_UNITS],
)
def test_a_bad_row_is_a_one_line_error_naming_it(tiny_text_lm_with_tokenizer, tmp_path, kind, row, message):
    """Unit ids are checked against num_units in interleaved and speech-only sources alike (an id of num_units
    would silently become a marker token), and an utterance without words is refused, not dropped."""
    from conftest import write_jsonl
    from transformers import AutoTokenizer

    from slam_recipes.data.interleaving import load_interleaved_datasets

    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    vocab = extend_tokenizer(tokenizer, 20)
    good = {"units": [1, 2, 3], "duration": [4, 4, 2], "aligned_text": WORDS}
    rows = [good, good, {**good, **row, **({"duration": [4] * len(row["units"])} if "units" in row else {})}]
    columns = ["units", "duration", "aligned_text"] if kind == "interleaved" else ["units"]
    path = write_jsonl(tmp_path / "bad.jsonl", [{c: r[c] for c in columns} for r in rows])
    with pytest.raises(DataError, match=message):
        load_interleaved_datasets([path], tokenizer=tokenizer, vocab=vocab, frame_rate=25, context_length=64)


def test_a_source_with_half_the_alignment_columns_is_refused(tiny_text_lm_with_tokenizer, tmp_path):
    """Units with aligned_text but no duration (tokenised without keep_durations) are not read as speech-only in
    silence; with `columns: [units]` they are, on purpose."""
    from conftest import write_jsonl
    from transformers import AutoTokenizer

    from slam_recipes.data.interleaving import load_interleaved_datasets

    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    vocab = extend_tokenizer(tokenizer, 20)
    path = write_jsonl(tmp_path / "half.jsonl", [{"units": [1, 2, 3], "aligned_text": WORDS}] * 4)
    common = dict(tokenizer=tokenizer, vocab=vocab, frame_rate=25, context_length=64)
    with pytest.raises(DataError, match=r"half.jsonl: has aligned_text but no duration column"):
        load_interleaved_datasets([path], **common)
    rows = load_interleaved_datasets([{"path": path, "columns": ["units"]}], **common)["input_ids"]
    assert list(rows) == [[0, 259, 260, 261, 1]] * 4


def test_the_pretraining_recipe_trains_an_interleaved_model_that_plain_transformers_loads(
    tiny_text_lm_with_tokenizer, tmp_path
):
    """recipes/pretrain.py with `interleaved: true` on a text LM and three sources (interleaved stories, speech-only
    units, text): it trains a few steps with a falling loss and saves a model + tokenizer that plain transformers
    loads, with the unit and marker tokens; a speech-only benchmark given to it is scored at evaluation as the
    reference scorer scores the saved model on pairs framed BOS units EOS."""
    import json
    import os

    import yaml
    from conftest import REPO, run_recipe, write_jsonl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = np.random.default_rng(0)
    stories = []
    for _ in range(60):
        durations = rng.integers(1, 4, size=40)
        edges = np.concatenate([[0], np.cumsum(durations)])[::4] * 0.04
        words = [{"word": f"w{k % 5}", "start_time": float(edges[k]), "end_time": float(edges[k + 1])} for k in range(10)]  # fmt: skip
        stories.append({"units": [k % 20 for k in range(40)], "duration": durations.tolist(), "aligned_text": words})
    sources = [write_jsonl(tmp_path / "stories.jsonl", stories),
               write_jsonl(tmp_path / "speech.jsonl", [{"units": [1, 2, 3, 4] * 5}] * 30),
               write_jsonl(tmp_path / "text.jsonl", [{"text": "w0 w1 w2 w3 w4 " * 4}] * 30)]  # fmt: skip
    pairs = [
        {"positive": rng.integers(0, 20, 9).tolist(), "negative": rng.integers(0, 20, 8).tolist()} for _ in range(6)
    ]
    benchmark = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    recipe = {
        "model_name_or_path": tiny_text_lm_with_tokenizer, "num_units": 20, "interleaved": True,
        "dataset_name": sources, "dataset_ratios": [0.54, 0.25, 0.2], "context_length": 64, "packing": "padding_free",
        "attn_implementation": "sdpa", "output_dir": str(tmp_path / "run"), "max_steps": 12,
        "per_device_train_batch_size": 4, "learning_rate": 5e-3, "logging_steps": 4, "save_strategy": "no",
        "use_cpu": True, "report_to": "none", "bf16": False, "dataloader_num_workers": 0, "seed": 0,
        "benchmarks": [f"pairs={benchmark}"], "validation_fraction": 0.1, "eval_strategy": "steps", "eval_steps": 12,
    }  # fmt: skip
    with open(tmp_path / "sims.yaml", "w") as f:
        yaml.safe_dump(recipe, f)
    result = run_recipe(os.path.join(REPO, "recipes", "pretrain.py"), "--config", str(tmp_path / "sims.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "trainer_state.json") as f:
        history = json.load(f)["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 3 and losses[-1] < losses[0]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run")
    vocab = InterleavedVocab.of(tokenizer, 20)
    assert (vocab.first_unit_id, vocab.speech_id, vocab.text_id) == (258, 278, 279)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == 280
    from conftest import reference_pair_score

    from slam_recipes.evaluation.likelihood import PairBenchmark

    framed = PairBenchmark("pairs", benchmark, *(
        [np.array([0, *(258 + np.array(p[side])), 1]) for p in pairs] for side in ("positive", "negative")
    ))  # fmt: skip
    (logged,) = [h["eval_pairs"] for h in history if "eval_pairs" in h]
    assert logged == pytest.approx(reference_pair_score(model.eval(), framed), abs=0.01)


@pytest.mark.parametrize(
    "override, message",
    [({"model_config_overrides": '{"num_hidden_layers": 1}'}, "model_config_overrides and rope_theta are not"),
     ({"rope_theta": 10000.0}, "rope_theta are not applied to an interleaved model yet")],
)  # fmt: skip
def test_options_an_interleaved_model_does_not_take_are_refused_before_loading(override, message):
    from slam_recipes.configs import DataArguments, parse_recipe_args
    from slam_recipes.training.arguments import PretrainConfig, PretrainModelArguments
    from slam_recipes.training.interleaved import build_interleaved_pretraining

    argv = ["--model_name_or_path", "no/such-model", "--dataset_name", "x.jsonl", "--interleaved", "true",
            "--output_dir", "unused", "--use_cpu", "true"]  # fmt: skip
    for key, value in override.items():
        argv += [f"--{key}", *(value if isinstance(value, list) else [str(value)])]
    model_args, data_args, training_args = parse_recipe_args(
        (PretrainModelArguments, DataArguments, PretrainConfig), argv
    )
    with pytest.raises(ConfigError, match=message):
        build_interleaved_pretraining(model_args, data_args, training_args)
