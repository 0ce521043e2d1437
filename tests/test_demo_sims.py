"""The interleaved (SIMS) demo: its base tokenizer rebuilt from the corpus, the corpus's word alignments and
cross-modal items against their texts and audio, and (slow tier) `make demo-sims` meeting its targets."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from slam_recipes.demo.corpus import read_rows
from slam_recipes.demo.sims import write_demo_base

DEMO = os.path.join(REPO, "data", "demo")
BASE = os.path.join(REPO, "recipes", "demo-sims", "tiny-qwen2-bpe")
FRAME = 1 / 25  # the demo's MFCC units: 25 frames per second before dedup


def test_the_committed_base_is_the_tokenizer_trained_on_the_corpus(tmp_path):
    """Training the BPE tokenizer on data/demo's texts again gives the committed files, and the config is the Slam
    demo's architecture with the tokenizer's vocabulary and special ids."""
    write_demo_base(str(tmp_path), DEMO, os.path.join(REPO, "recipes", "demo", "tiny-qwen2"))
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        with open(tmp_path / name) as rebuilt, open(os.path.join(BASE, name)) as committed:
            assert json.load(rebuilt) == json.load(committed), name
    with (
        open(os.path.join(BASE, "config.json")) as f,
        open(os.path.join(REPO, "recipes/demo/tiny-qwen2/config.json")) as g,
    ):
        config, slam = json.load(f), json.load(g)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    assert config["vocab_size"] == len(tokenizer) and (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    assert {k: v for k, v in config.items() if not k.endswith(("vocab_size", "token_id"))} == {
        k: v for k, v in slam.items() if not k.endswith(("vocab_size", "token_id"))
    }
    assert tokenizer.tokenize("a tractor milks a duck.") == ["a", "Ġtractor", "Ġmilks", "Ġa", "Ġduck", "."]


@pytest.fixture(scope="module")
def validation_rows():
    return read_rows(os.path.join(DEMO, "pretrain", "validation.parquet"))


def test_word_alignments_follow_the_text_and_fit_the_audio(validation_rows):
    """Every pretraining row's `aligned_text` is its text's words in order, each within the audio (the units' run
    lengths add up to its frames), none overlapping the next, the first starting and the last ending with the
    speech (within 50 ms: espeak-ng's leading and trailing silence); the units and durations pair up."""
    for row in validation_rows:
        words = row["aligned_text"]
        assert [w["word"] for w in words] == re.findall(r"[\w']+", row["units_text"])
        assert len(row["duration"]) == len(row["units"]) and min(row["duration"]) >= 1
        seconds = sum(row["duration"]) * FRAME
        for word, after in zip(words, words[1:] + [None], strict=True):
            assert 0 <= word["start_time"] < word["end_time"] <= seconds + FRAME, (row["id"], word)
            assert after is None or word["end_time"] <= after["start_time"]
        assert words[0]["start_time"] <= 0.05 and abs(seconds - words[-1]["end_time"]) <= 0.05, row["id"]


def test_cross_modal_items_are_the_topic_storycloze_stories_cut_before_their_ending():
    """eval/tsc_cross holds, per tSC-like pair, its shared start as the prompt and the two endings, each with its
    own audio; the prompt and an ending spoken apart have about the units of the whole story spoken at once."""
    tsc, cross = (read_rows(os.path.join(DEMO, "eval", f"{name}.parquet")) for name in ("tsc", "tsc_cross"))
    assert len(tsc) == len(cross)
    ratios = []
    for whole, item in zip(tsc, cross, strict=True):
        assert (whole["id"], whole["voice"], whole["topic"]) == (item["id"], item["voice"], item["topic"])
        assert whole["positive_text"] == item["prompt_text"] + " " + item["positive_text"]
        assert whole["negative_text"] == item["prompt_text"] + " " + item["negative_text"]
        ratios.append((len(item["prompt"]) + len(item["positive"])) / len(whole["positive"]))
    assert 0.9 < np.median(ratios) < 1.1


@pytest.mark.slow
def test_sims_demo_meets_its_targets(tmp_path):
    """`make demo-sims` as users run it (pretraining sized by its time budget): every stage runs, and on held-out
    voices topic StoryCloze with a text ending (T→T and S→T) meets the demo's targets."""
    out = tmp_path / "demo-sims"
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "demo_sims.py"), "--output_dir", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    assert set(results["scores"]["speech"]) == {"swuggy", "sblimp", "ssc", "tsc"}
    assert set(results["scores"]["cross_modal"]) == {f"tsc_cross_{d}" for d in ("s2s", "s2t", "t2s", "t2t")}
    assert results["training"]["budget"]["stopped_by_budget"]
    assert all(results["targets_met"].values()), results["scores"]
