"""The offline spoken demo corpus: the text generator, the minimal pairs, the committed data and its rebuild."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, reference_pair_score
from transformers import AutoModelForCausalLM

from slam_recipes.demo import text as demo_text
from slam_recipes.demo.corpus import (
    DATASETS,
    EVAL_VOICES,
    MANIFEST_FILE,
    TRAIN_VOICES,
    CorpusSizes,
    compare_corpus,
    corpus_texts,
    read_rows,
)
from slam_recipes.evaluation.likelihood import load_pair_benchmark
from slam_recipes.precision import native_bf16

DEMO = os.path.join(REPO, "data", "demo")
SMALL = CorpusSizes(pretrain_train=40, pretrain_validation=8, dpo_train=8, dpo_validation=4, sblimp_items=6,
                    story_items=6)  # fmt: skip


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(DEMO, MANIFEST_FILE)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def committed():
    return {name: read_rows(os.path.join(DEMO, name + ".parquet")) for name in DATASETS}


def _words(text: str) -> list[str]:
    return text.replace(".", "").split()


def test_text_generator_is_deterministic():
    assert corpus_texts(3, SMALL) == corpus_texts(3, SMALL)
    assert corpus_texts(3, SMALL)["pretrain/train"] != corpus_texts(4, SMALL)["pretrain/train"]
    stories = demo_text.stories(20, seed=1)
    assert [s.text for s in stories] == [s.text for s in demo_text.stories(20, seed=1)]
    assert {s.topic for s in stories} == set(demo_text.TOPICS)


def test_stories_follow_the_grammar():
    words = demo_text.lexicon()
    singular_verbs = {pair[1] for t in demo_text.TOPICS.values() for pair in t["verbs"]}
    plural_nouns = {pair[1] for t in demo_text.TOPICS.values() for pair in t["nouns"]}
    kinds = set()
    for item in demo_text.stories(100, seed=2):
        topic_words = {w for pair in demo_text.TOPICS[item.topic]["nouns"] + demo_text.TOPICS[item.topic]["verbs"]
                       for w in pair}  # fmt: skip
        for sentence in item.sentences:
            phrase = sentence.words[slice(*sentence.subject)]
            plural = phrase[-1] in plural_nouns
            assert plural == sentence.subject_plural
            assert phrase[0] in demo_text.DETERMINERS[plural][0] + demo_text.DETERMINERS[plural][1]  # agreement
            assert (sentence.words[sentence.verb] in singular_verbs) != plural  # subject-verb agreement
            kinds.add(len(sentence.objects))
            for w in sentence.words:  # nouns and verbs come from the story's topic only
                if w in words["nouns"] or w in words["verbs"]:
                    assert w in topic_words, (item.topic, w)
        # The ending is the hero acting on the thing of the first sentence.
        last, first = item.sentences[-1], item.sentences[0]
        assert last.words[last.subject[1] - 1] == first.words[first.subject[1] - 1]
        assert last.words[slice(*last.objects[0])][-1] == first.words[slice(*first.objects[0])][-1]
    assert kinds == {1, 2}  # transitive, transitive + place


def test_titles_are_short_utterances_of_the_storys_words():
    rng = np.random.default_rng(0)
    lexicon = demo_text.lexicon()
    for item in demo_text.stories(30, seed=3):
        title = item.title(rng)
        words = title.rstrip(".").lower().split()
        assert title.endswith(".") and 1 <= len(words) <= 3
        assert words[-1] in lexicon["nouns"] and words[-1] in _words(item.text)  # a noun of the story
        assert all(w in lexicon["nouns"] + lexicon["adjectives"] + ["and"] for w in words)


def test_voices_held_out_of_training():
    combos = {(v.voice, v.rate, v.pitch) for v in TRAIN_VOICES + EVAL_VOICES}
    assert len(combos) == len(TRAIN_VOICES) + len(EVAL_VOICES) >= 8
    assert not {v.name for v in EVAL_VOICES} & {v.name for v in TRAIN_VOICES}


def test_committed_texts_are_the_generators(manifest, committed):
    texts = corpus_texts(manifest["seed"], CorpusSizes(**manifest["sizes"]))
    for name in DATASETS:
        rows = committed[name]
        assert len(rows) == len(texts[name]) == manifest["datasets"][name]["rows"], name
        for row, expected in zip(rows, texts[name], strict=True):
            assert {k: row[k] for k in expected} == expected, name


def test_splits_hold_different_stories(committed):
    def stories(name):
        return {r["units_text"] for r in committed[name] if not r["id"].endswith("-title")}

    train = stories("pretrain/train")
    assert len(train) == len(committed["pretrain/train"]) // 2  # a title row, then its story
    assert not train & stories("pretrain/validation")
    assert not train & {r["prompt_text"] + " " + r["chosen_text"] for r in committed["dpo/train"]}
    for name in ("eval/ssc", "eval/tsc"):
        assert not train & {r["positive_text"] for r in committed[name]}
    train_voices = {v.name for v in TRAIN_VOICES}
    assert {r["voice"] for name in DATASETS if name.startswith(("pretrain", "dpo")) for r in committed[name]} <= (
        train_voices
    )
    assert {r["voice"] for name in DATASETS if name.startswith("eval") for r in committed[name]} == {
        v.name for v in EVAL_VOICES
    }


def test_sblimp_pairs_break_exactly_one_rule(committed):
    verb_forms = {w: pair for t in demo_text.TOPICS.values() for pair in t["verbs"] for w in pair}
    adjectives, nouns = set(demo_text.lexicon()["adjectives"]), set(demo_text.lexicon()["nouns"])
    types = set()
    for row in committed["eval/sblimp"]:
        good, bad = _words(row["positive_text"]), _words(row["negative_text"])
        assert len(good) == len(bad)
        diff = [i for i, (a, b) in enumerate(zip(good, bad, strict=True)) if a != b]
        types.add(row["type"])
        if row["type"] == "subject_verb_agreement":
            (i,) = diff
            assert verb_forms[good[i]] == verb_forms[bad[i]] and good[i] != bad[i]
        elif row["type"] == "determiner_noun_agreement":
            (i,) = diff
            assert demo_text.OTHER_NUMBER[good[i]] == bad[i]
        else:
            i, j = diff
            assert j == i + 1 and (good[i], good[j]) == (bad[j], bad[i])
            assert good[i] in adjectives and good[j] in nouns
    assert types == set(demo_text.SBLIMP_TYPES)


def test_story_pairs_differ_only_in_the_ending(committed):
    topic_of = {w: t for t, spec in demo_text.TOPICS.items() for pair in spec["nouns"] + spec["verbs"] for w in pair}
    for row in committed["eval/ssc"] + committed["eval/tsc"]:
        good = row["positive_text"].split(". ")
        bad = row["negative_text"].split(". ")
        assert good[:-1] == bad[:-1] and good[-1] != bad[-1]
    for row in committed["eval/ssc"]:  # same topic; the negative's object noun never occurs in the story
        story, wrong = _words(row["positive_text"]), _words(row["negative_text"].split(". ")[-1])
        assert {topic_of[w] for w in wrong if w in topic_of} == {topic_of[w] for w in story if w in topic_of}
        assert wrong[-1] not in story
    for row in committed["eval/tsc"]:  # another topic
        ending = _words(row["negative_text"].split(". ")[-1])
        assert (
            {topic_of[w] for w in ending if w in topic_of}
            == {t for t in demo_text.TOPICS if t != row["topic"]} & {topic_of[w] for w in ending if w in topic_of}
            != set()
        )


def test_swuggy_nonwords_are_new_and_matched(committed):
    lexicon = {w for words in demo_text.lexicon().values() for w in words}
    for row in committed["eval/swuggy"]:
        assert row["positive_text"] in lexicon and row["negative_text"] not in lexicon
        assert demo_text.syllables(row["negative_text"]) == demo_text.syllables(row["positive_text"])
    assert min(r["frequency"] for r in committed["eval/swuggy"]) > 0  # every word occurs in the training stories


def test_units_are_in_range_and_structured(manifest, committed):
    rows = committed["pretrain/train"]
    units = np.concatenate([np.asarray(r["units"]) for r in rows])
    assert units.max() < 500 and (np.bincount(units, minlength=500) > 0).sum() > 450
    assert all(r["units"][i] != r["units"][i + 1] for r in rows[:50] for i in range(len(r["units"]) - 1))  # dedup
    assert manifest["units"] == {"backend": "mfcc", "mfcc_frame_rate": 25, "num_units": 500, "dedup": True,
                                 "kmeans": "kmeans.safetensors"}  # fmt: skip


def test_rebuild_reproduces_the_committed_units(tmp_path):
    """A rebuild with the committed seed (texts → espeak-ng → MFCC → the committed k-means) gives the same units; a
    corpus that differs in one unit is caught, naming the dataset and row."""
    command = [sys.executable, os.path.join(REPO, "recipes", "make_demo_corpus.py"), "--max_rows", "32",
               "--kmeans_path", os.path.join(DEMO, "kmeans.safetensors"), "--only", "eval/swuggy"]  # fmt: skip
    done = subprocess.run([*command, "pretrain/validation", "--verify", DEMO], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reproduced exactly" in done.stdout

    tampered = tmp_path / "demo"
    shutil.copytree(DEMO, tampered)
    rows = read_rows(str(tampered / "eval" / "swuggy.parquet"))
    rows[5]["negative"][0] = (rows[5]["negative"][0] + 1) % 500
    from slam_recipes.audio.tokenizer import write_shard

    write_shard(str(tampered / "eval" / "swuggy.parquet"), rows, ["positive", "negative"])
    assert compare_corpus(DEMO, str(tampered), ["eval/swuggy"]) == ["eval/swuggy: row 5 differs in 'negative'"]
    assert compare_corpus(DEMO, str(tampered), [], kmeans=True) == []  # the copied centroids are the same
    done = subprocess.run([*command, "--verify", str(tampered)], capture_output=True, text=True)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "eval/swuggy: row 5" in done.stderr


def test_quick_demo_pipeline_runs_every_stage(tmp_path):
    """recipes/demo.py end to end (pretrain → evaluate → DPO → evaluate), a few steps of each: every stage runs as
    its own recipe and the report gathers their results, steps, machine and precision. (That the demo learns is
    tested by the full run, test_demo_meets_its_targets, in the slow tier; that pretraining learns, by
    test_pretrain_script.)"""
    out = tmp_path / "demo"
    command = [sys.executable, os.path.join(REPO, "recipes", "demo.py"), "--output_dir", str(out),
               "--pretrain_max_steps", "6", "--dpo_max_steps", "2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    for stage, folder in (("before DPO", out / "pretrain"), ("after DPO", out / "dpo")):
        with open(folder / "likelihood_eval.json") as f:
            evaluation = json.load(f)
        assert set(results["scores"][stage]) == {"swuggy", "sblimp", "ssc", "tsc"}
        assert results["scores"][stage] == {name: r["score"] for name, r in evaluation["results"].items()}
    # one score recomputed a second way from the tuned model: each sequence alone (conftest.reference_pair_score)
    model = AutoModelForCausalLM.from_pretrained(out / "dpo", dtype=getattr(torch, evaluation["dtype"]))
    tsc = load_pair_benchmark("tsc", os.path.join(REPO, "data/demo/eval/tsc.parquet"), 500)
    assert results["scores"]["after DPO"]["tsc"] == pytest.approx(reference_pair_score(model.eval(), tsc), abs=1e-6)
    assert results["training"]["pretraining"]["steps"] == 6 and results["training"]["DPO"]["steps"] == 2
    assert results["hardware"]["precision"] == ("bf16" if native_bf16("cpu")[0] else "fp32")
    assert (out / "training.png").stat().st_size > 10_000
    report = (out / "results.md").read_text()
    assert "| tsc |" in report and "pretraining 6 steps" in report and results["hardware"]["device"] in report


@pytest.mark.slow
def test_demo_meets_its_targets(tmp_path):
    """`make demo` as users run it (stages sized by their time budgets), on whatever CPU runs the tests: after DPO
    the README's targets hold on the held-out voices, and DPO's reward margin is positive.

    Known shortfall (README, The demo on each kind of CPU): on a CPU without native bf16 the demo trains in float32,
    and sBLIMP-like lands on either side of its target from run to run (71.9–76.7 after DPO on a 2-core AVX2 EPYC).
    There, and only for that target, a miss is reported as an expected failure with its score; every other target
    is asserted everywhere, and sBLIMP-like too where the CPU has native bf16 (75.4–78.3 after DPO in three runs on a
    2-core AVX512-BF16 EPYC)."""
    out = tmp_path / "demo"
    command = [sys.executable, os.path.join(REPO, "recipes", "demo.py"), "--output_dir", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["dpo_reward_margin"]["eval"] > 0 and results["dpo_reward_margin"]["train"] > 0
    assert results["training"]["pretraining"]["budget"]["stopped_by_budget"]
    missed = sorted(name for name, met in results["targets_met"].items() if not met)
    if missed == ["sblimp"] and not native_bf16("cpu")[0]:
        score = results["scores"]["after DPO"]["sblimp"]
        pytest.xfail(f"sBLIMP-like {score:.1f} < 75 after DPO on a CPU without native bf16 (README: known shortfall)")
    assert not missed, (results["scores"], results["training"])


def test_corpus_arguments_and_output_dir_are_checked(tmp_path):
    from slam_recipes.configs import DemoCorpusArguments
    from slam_recipes.demo.corpus import check_build_options, write_corpus
    from slam_recipes.errors import ConfigError

    with pytest.raises(ConfigError, match=r"only: unknown dataset\(s\) \['eval/nope'\]"):
        check_build_options(only=["eval/nope"])
    with pytest.raises(ConfigError, match="max_rows must be a positive multiple of 32, got 10"):
        write_corpus(str(tmp_path / "new"), only=["eval/swuggy"], max_rows=10)
    assert not os.path.exists(tmp_path / "new")
    with pytest.raises(ConfigError, match=r"kmeans_path km\.pt: the demo corpus takes \.safetensors or \.npy"):
        write_corpus(str(tmp_path / "new"), only=["eval/swuggy"], max_rows=32, kmeans_path="km.pt")  # no pickles
    assert not os.path.exists(tmp_path / "new")
    with pytest.raises(ConfigError, match="num_workers must be at least 1, got 0"):
        DemoCorpusArguments(num_workers=0)
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty; pass overwrite_output_dir"):
        write_corpus(str(tmp_path), only=["eval/swuggy"], max_rows=32)
    assert os.listdir(tmp_path) == ["keep.txt"]  # nothing written or removed


def test_demo_refuses_a_missing_recipe_before_running_anything(tmp_path):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "demo.py"), "--output_dir", str(tmp_path / "out"),
         "--dpo_config", "recipes/demo/nope.yaml"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: dpo_config: no such recipe file 'recipes/demo/nope.yaml'"
    assert not (tmp_path / "out").exists()


def test_a_stage_runs_in_the_demos_process_and_a_failed_one_ends_the_demo(tmp_path, capsys):
    """run_stage runs a script as `__main__` with its own argv in this process (its pid is this one), restores
    sys.argv, and ends the demo with the exit code of a stage that fails; an exception propagates."""
    from slam_recipes.demo.report import run_script, run_stage

    script = tmp_path / "stage.py"
    script.write_text(
        "import os, sys\n"
        "print(__name__, sys.argv[1:], os.getpid() == int(sys.argv[2]))\n"
        "if sys.argv[1] == 'fail':\n    sys.exit(3)\n"
        "if sys.argv[1] == 'raise':\n    raise ValueError('boom')\n"
    )
    argv, pid = list(sys.argv), str(os.getpid())
    assert run_stage("fine", str(script), "ok", pid) >= 0
    assert capsys.readouterr().out.splitlines()[-1] == "__main__ ['ok', '" + pid + "'] True"
    assert run_script(str(script), "fail", pid) == 3
    with pytest.raises(SystemExit) as stopped:
        run_stage("broken", str(script), "fail", pid)
    assert stopped.value.code == 3
    assert capsys.readouterr().err.strip() == "error: demo stage 'broken' failed with exit code 3"
    with pytest.raises(ValueError, match="boom"):
        run_script(str(script), "raise", pid)
    assert sys.argv == argv


def test_training_plot_and_results_table(tmp_path):
    from slam_recipes.demo.report import results_table
    from slam_recipes.training.records import plot_training, series

    history = [{"loss": 6.0 - i / 10, "learning_rate": 1e-3 * (1 - i / 20), "step": i} for i in range(1, 20)]
    history += [{"eval_loss": 4.0, "step": 10}, {"eval_loss": 3.0, "step": 19}, {"train_runtime": 5.0, "step": 19}]
    assert series(history, "eval_loss") == ([10, 19], [4.0, 3.0])
    path = plot_training({"pretraining": history, "DPO": history[:5]}, str(tmp_path / "plots" / "training.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = results_table({"before DPO": {"tsc": 91.25, "sblimp": 70.0}, "after DPO": {"tsc": 97.5}}, {"tsc": 90})
    assert table.splitlines() == [
        "| metric | before DPO | after DPO | target |",
        "|---|---|---|---|",
        "| tsc | 91.2 | 97.5 | ≥ 90 |",
        "| sblimp | 70.0 | — |  |",
    ]
