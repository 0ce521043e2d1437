"""Pairwise likelihood evaluation: scoring, aggregation, converters from the published layouts, the recipe."""

import json
import os
import wave

import numpy as np
import pytest
import torch
from conftest import REPO, reference_pair_score, run_recipe, write_jsonl

from slam_recipes.configs import parse_benchmark_specs
from slam_recipes.errors import DataError
from slam_recipes.evaluation.layouts import UnitTable, convert_benchmark, read_salmon, read_storycloze, read_zr2021
from slam_recipes.evaluation.likelihood import (
    PairBenchmark,
    aggregate,
    evaluate_benchmark,
    frame,
    load_pair_benchmark,
    padded_length_batches,
    pair_outcomes,
    sequence_log_likelihoods,
    write_results,
)
from slam_recipes.modeling.unit_lm import build_unit_lm
from slam_recipes.units import build_unit_tokenizer

EVALUATE = os.path.join(REPO, "recipes", "evaluate.py")
CONVERT = os.path.join(REPO, "recipes", "convert_benchmark.py")


def reference_log_likelihood(model, ids: np.ndarray) -> tuple[float, int]:
    """Independent computation, one sample at a time, no padding: sum of log p(token | prefix), and token count."""
    with torch.no_grad():
        logits = model(torch.tensor(ids[None], dtype=torch.long)).logits[0].double()
    log_probs = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(ids[1:], dtype=torch.long)
    return float(log_probs[torch.arange(targets.numel()), targets].sum()), int(targets.numel())


def reference_score(model, benchmark: PairBenchmark) -> float:
    """Independent benchmark score (×100) with mean log-likelihoods, one unpadded sample at a time
    (conftest.reference_pair_score), refusing near-ties that float32 batching could flip."""
    return reference_pair_score(model, benchmark, near_tie=1e-4)


def samples(rng, n, low=3, high=40):
    return [rng.integers(0, 500, size=int(rng.integers(low, high))) for _ in range(n)]


# -- scoring ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mean", [True, False])
def test_batched_scores_equal_a_per_sample_computation(tiny_unit_lm_dir, mean):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir).eval()
    rng = np.random.default_rng(0)
    units = samples(rng, 13)
    values = np.concatenate(units)
    offsets = np.concatenate([[0], np.cumsum([len(u) for u in units])])
    sequences = frame(values, offsets)
    # A small budget: several batches, each mixing lengths, so right padding is exercised.
    scores = sequence_log_likelihoods(model, sequences, mean=mean, max_tokens_per_batch=120)
    for sequence, score in zip(sequences, scores, strict=True):
        total, count = reference_log_likelihood(model, sequence)
        assert count == len(sequence) - 1  # every unit and the closing <S> are scored, the first <S> is not
        assert score == pytest.approx(total / count if mean else total, abs=1e-4)


def test_frame_and_length_batches():
    ids = frame(np.array([0, 499, 7]), np.array([0, 2, 3]))
    assert [x.tolist() for x in ids] == [[1, 2, 501, 1], [1, 9, 1]]
    lengths = np.array([5, 50, 7, 20, 50])
    batches = padded_length_batches(lengths, max_tokens_per_batch=100)
    assert [b.tolist() for b in batches] == [[1, 4], [3, 2, 0]]  # longest first; rows × longest ≤ 100
    assert [b.tolist() for b in padded_length_batches(lengths, max_tokens_per_batch=10)][0] == [1]  # too long: alone


def test_ties_count_half():
    assert pair_outcomes([2.0, 1.0, -3.0], [1.0, 1.0, -2.0]).tolist() == [1.0, 0.5, 0.0]


def test_identical_positive_and_negative_tie_through_a_real_model(tiny_unit_lm_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir)
    rng = np.random.default_rng(1)
    units = samples(rng, 6)
    sequences = frame(np.concatenate(units), np.concatenate([[0], np.cumsum([len(u) for u in units])]))
    benchmark = PairBenchmark("same", "memory", positive=sequences, negative=[s.copy() for s in sequences])
    result = evaluate_benchmark(model, benchmark, max_tokens_per_batch=64)
    assert result["score"] == 50.0 and result["num_pairs"] == 6 and result["likelihood"] == "mean"


def test_a_model_trained_on_structured_sequences_prefers_them_over_shuffled_ones(tiny_unit_lm_dir):
    """Train on sequences where each unit follows from the one before; held-out ones must beat their shuffles."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir)
    rng = np.random.default_rng(2)

    def structured(n):
        starts, lengths = rng.integers(0, 60, n), rng.integers(12, 24, n)
        return [(s + 7 * np.arange(k)) % 60 for s, k in zip(starts, lengths, strict=True)]

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        batch = frame(*_flat(structured(16)))
        width = max(len(s) for s in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(batch):
            ids[i, : len(s)], mask[i, : len(s)] = torch.from_numpy(s), 1
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    held_out = structured(60)
    shuffled = [rng.permutation(s) for s in held_out]
    benchmark = PairBenchmark("order", "memory", positive=frame(*_flat(held_out)), negative=frame(*_flat(shuffled)))
    for mean_nll in (True, False):
        assert evaluate_benchmark(model, benchmark, mean_nll=mean_nll)["score"] > 90


def _flat(rows):
    return np.concatenate(rows), np.concatenate([[0], np.cumsum([len(r) for r in rows])])


# -- aggregation ------------------------------------------------------------------------------------------------------
def test_aggregation_is_per_id_then_over_ids_with_frequency_bands():
    columns = {
        "id": ["a", "a", "a", "b", "c", "c"],
        "voice": ["v1", "v2", "v3", "v1", "v1", "v2"],
        "frequency": [3, 3, 3, 0, 250, 250],
    }
    outcomes = np.array([1, 1, 0, 0, 0.5, 1])
    result = aggregate(outcomes, columns)
    # per id: a = 2/3, b = 0, c = 0.75 → mean 47.22 (the mean over pairs would be 58.33)
    assert result["score"] == pytest.approx(100 * (2 / 3 + 0 + 0.75) / 3)
    assert result["num_pairs"] == 6 and result["num_groups"] == 3
    bands = result["breakdown"]["frequency"]
    assert list(bands) == ["oov", "1-5", ">100"]
    assert bands["oov"] == {"score": 0.0, "num_groups": 1}
    assert bands["1-5"]["score"] == pytest.approx(200 / 3)
    assert result["score_in_vocab"] == pytest.approx(100 * (2 / 3 + 0.75) / 2)
    # no id column: the plain mean over pairs
    assert aggregate(outcomes)["score"] == pytest.approx(100 * 3.5 / 6)


def test_sblimp_groups_by_type_subtype_and_id():
    columns = {"id": ["1", "1", "1", "1"], "type": ["agr", "agr", "agr", "island"], "subtype": ["x", "x", "y", "x"]}
    result = aggregate(np.array([1, 0, 1, 0]), columns)
    assert result["num_groups"] == 3  # (agr, x, 1), (agr, y, 1), (island, x, 1)
    assert result["score"] == pytest.approx(100 * (0.5 + 1 + 0) / 3)
    assert result["breakdown"]["type"] == {
        "agr": {"score": 75.0, "num_groups": 2},
        "island": {"score": 0.0, "num_groups": 1},
    }


def test_benchmark_specs():
    assert parse_benchmark_specs(["tsc=data/eval/tsc", "data/demo/eval/swuggy.parquet"]) == {
        "tsc": "data/eval/tsc",
        "swuggy": "data/demo/eval/swuggy.parquet",
    }
    with pytest.raises(Exception, match="given twice"):
        parse_benchmark_specs(["a=x", "a=y"])


# -- pair datasets ----------------------------------------------------------------------------------------------------
def test_pair_dataset_loads_units_in_every_form(tmp_path):
    rows = [{"positive": [3, 3, 4], "negative": "<Un5><Un6>", "id": "w1", "voice": "a", "frequency": 2}]
    benchmark = load_pair_benchmark("p", write_jsonl(tmp_path / "mixed.jsonl", rows), 500, dedup=True)
    assert benchmark.positive[0].tolist() == [1, 5, 6, 1] and benchmark.negative[0].tolist() == [1, 7, 8, 1]
    assert benchmark.columns == {"id": ["w1"], "voice": ["a"], "frequency": [2]}
    floats = write_jsonl(tmp_path / "floats.jsonl", [{"positive": [0.5], "negative": [1]}])
    with pytest.raises(DataError, match="floats.jsonl: column 'positive' holds lists of float64"):
        load_pair_benchmark("p", floats, 500)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"positive": [1, 2], "negative": [3, 500]}], "column 'negative' row 0: unit id 500 outside [0, 500)"),
        ([{"positive": [1], "negative": [2]}, {"positive": [1, 2], "negative": None}],
         "row 1: a positive without a negative (unequal positives/negatives)"),
        ([{"positive": [1], "negative": [2]}, {"positive": [], "negative": [2]}], "row 1: empty unit sequence"),
        ([{"positive": [1], "other": [2]}], "missing column(s) ['negative'] of a pair dataset"),
    ],
)  # fmt: skip
def test_bad_pair_datasets_name_the_file_and_row(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_pair_benchmark("bad", path, 500)
    assert message in str(err.value) and "bad.jsonl" in str(err.value)


# -- converters -------------------------------------------------------------------------------------------------------
def write_wav(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\0\0" * 160)


LEXICAL_GOLD = [  # rows shuffled on purpose: pairing by position would pair the wrong files
    ("filename", "id", "voice", "frequency", "word", "correct"),
    ("f_b_v1_nw", "b", "v1", "0", "blurk", "0"),
    ("f_a_v1_w", "a", "v1", "3", "cat", "1"),
    ("f_a_v2_nw", "a", "v2", "3", "cug", "0"),
    ("f_b_v1_w", "b", "v1", "0", "brick", "1"),
    ("f_a_v1_nw", "a", "v1", "3", "cug", "0"),
    ("f_a_v2_w", "a", "v2", "3", "cat", "1"),
]


def make_zr2021(folder, gold=LEXICAL_GOLD, skip_wav=()):
    os.makedirs(folder, exist_ok=True)
    with open(folder / "gold.csv", "w") as f:
        f.write("\n".join(",".join(row) for row in gold) + "\n")
    for row in gold[1:]:
        if row[0] not in skip_wav:
            write_wav(folder / f"{row[0]}.wav")
    return folder


def units_table(tmp_path, names, prefix=""):
    """A units dataset for `names` (relative paths), each file's units derived from its name."""
    rows = [{"file": prefix + name, "units": [len(name) % 50, i % 500, 7]} for i, name in enumerate(names)]
    return write_jsonl(tmp_path / "units.jsonl", rows), {
        name: row["units"] for name, row in zip(names, rows, strict=True)
    }


def test_zr2021_pairs_by_id_and_voice_not_by_position(tmp_path):
    folder = make_zr2021(tmp_path / "lexical" / "dev")
    records = read_zr2021(str(folder))
    assert sorted((r.positive, r.negative) for r in records) == [
        ("f_a_v1_w.wav", "f_a_v1_nw.wav"),
        ("f_a_v2_w.wav", "f_a_v2_nw.wav"),
        ("f_b_v1_w.wav", "f_b_v1_nw.wav"),
    ]
    first = next(r for r in records if r.positive == "f_a_v1_w.wav")
    assert first.columns == {
        "id": "a", "voice": "v1", "frequency": 3, "positive_text": "cat", "negative_text": "cug"
    }  # fmt: skip


def test_zr2021_conversion_and_official_aggregation_end_to_end(tmp_path):
    folder = make_zr2021(tmp_path / "lexical" / "dev")
    names = [f"{row[0]}.wav" for row in LEXICAL_GOLD[1:]]
    # The units table holds absolute paths, as a tokeniser run over the folder writes them.
    table, units = units_table(tmp_path, names, prefix=f"{folder}/")
    out = tmp_path / "swuggy"
    dataset = convert_benchmark("zr2021", str(folder), table, str(out))
    assert len(dataset) == 3 and (out / "state.json").exists() and not (tmp_path / "swuggy.partial").exists()
    benchmark = load_pair_benchmark("swuggy", str(out), 500)
    row = dataset["positive_file"].index("f_a_v2_w.wav")
    assert benchmark.positive[row].tolist() == [1, *(np.array(units["f_a_v2_w.wav"]) + 2), 1]
    assert benchmark.negative[row].tolist() == [1, *(np.array(units["f_a_v2_nw.wav"]) + 2), 1]
    # Outcomes by hand: a/v1 = 1, a/v2 = 0, b/v1 = 0.5 → per id a = 0.5, b = 0.5 → 50; bands: b is oov.
    outcome = {"f_a_v1_w.wav": 1.0, "f_a_v2_w.wav": 0.0, "f_b_v1_w.wav": 0.5}
    result = aggregate(np.array([outcome[f] for f in dataset["positive_file"]]), benchmark.columns)
    assert result["score"] == 50.0 and result["num_groups"] == 2
    assert result["breakdown"]["frequency"] == {
        "oov": {"score": 50.0, "num_groups": 1}, "1-5": {"score": 50.0, "num_groups": 1}
    }  # fmt: skip


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_gold", "missing gold.csv"),
        ("unequal", "lines 2, 3, 4: id 'a' voice 'v1' has 1 correct and 2 incorrect rows (unequal positives/negatives)"),
        ("no_wav", "gold.csv line 3: audio file"),
        ("bad_correct", "gold.csv line 2: correct must be 1 or 0"),
    ],
)  # fmt: skip
def test_zr2021_bad_input(tmp_path, case, message):
    folder = tmp_path / "syntactic" / "dev"
    if case == "no_gold":
        os.makedirs(folder)
    elif case == "unequal":
        make_zr2021(folder, [LEXICAL_GOLD[0], ("x1", "a", "v1", "3", "cat", "1"), ("x2", "a", "v1", "3", "cag", "0"),
                             ("x3", "a", "v1", "3", "cog", "0")])  # fmt: skip
    elif case == "no_wav":
        make_zr2021(folder, skip_wav=("f_a_v1_w",))
    else:
        make_zr2021(folder, [LEXICAL_GOLD[0], ("x1", "a", "v1", "3", "cat", "yes")])
    with pytest.raises(DataError) as err:
        read_zr2021(str(folder))
    assert message in str(err.value) and str(folder) in str(err.value)


def test_storycloze_pairs_by_name_never_by_directory_order(tmp_path):
    folder = tmp_path / "tSC"
    for name in ("10_incorrect", "2_correct", "10_correct", "2_incorrect", "2_mutual"):
        write_wav(folder / f"{name}.wav")
    records = read_storycloze(str(folder))
    assert [(r.positive, r.negative, r.columns["id"]) for r in records] == [
        ("2_correct.wav", "2_incorrect.wav", "2"),
        ("10_correct.wav", "10_incorrect.wav", "10"),
    ]
    write_wav(folder / "11_correct.wav")
    with pytest.raises(DataError, match=r"11_correct.wav: no matching 11_incorrect file"):
        read_storycloze(str(folder))
    with pytest.raises(DataError, match="no <idx>_true / <idx>_false audio files"):
        read_storycloze(str(folder), positive_suffix="true", negative_suffix="false")


def test_salmon_parts_and_options(tmp_path):
    root = tmp_path / "salmon"
    for part in ("bg_alignment", "speaker_consistency"):
        for sample in (0, 1):
            for option in (0, 1):
                write_wav(root / part / f"sample_{sample}_{option}.wav")
    records = read_salmon(str(root))
    assert len(records) == 4
    assert (records[0].positive, records[0].negative) == ("bg_alignment/sample_0_0.wav", "bg_alignment/sample_0_1.wav")
    assert records[-1].columns == {"id": "speaker_consistency/1", "part": "speaker_consistency"}
    # one part folder on its own
    assert [r.columns["part"] for r in read_salmon(str(root / "bg_alignment"))] == ["bg_alignment"] * 2
    (root / "bg_alignment" / "sample_1_0.wav").unlink()
    with pytest.raises(DataError, match="sample_1 has no option 0"):
        read_salmon(str(root))


def test_unit_table_lookup_forms(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"file_name": "/abs/salmon/bg_alignment/sample_0_0.wav", "units": [1, 2]},
        {"file_name": "sample_9_1", "units": [3]},
    ])  # fmt: skip
    table = UnitTable(path, 500)
    assert table.lookup("bg_alignment/sample_0_0.wav", "x").tolist() == [1, 2]  # suffix of an absolute path
    assert table.lookup("part/sample_9_1.wav", "x").tolist() == [3]  # a unique bare name
    # the same bare name in two part folders cannot be told apart
    twice = write_jsonl(tmp_path / "twice.jsonl", [{"file": f"{p}/sample_0_0.wav", "units": [1]} for p in "ab"])
    with pytest.raises(DataError, match="here: 2 rows of .* match sample_0_0.wav; store file paths relative"):
        UnitTable(twice, 500).lookup("sample_0_0.wav", "here")
    with pytest.raises(DataError, match="gold.csv line 7: no units for part/sample_5_0.wav in"):
        table.lookup("part/sample_5_0.wav", "gold.csv line 7")


# -- the recipes, as users run them -----------------------------------------------------------------------------------
def run(script, *args):
    return run_recipe(script, *args)


def test_convert_then_evaluate_recipes(tmp_path, tiny_unit_lm_dir):
    folder = tmp_path / "sSC"
    names = []
    for index in range(6):
        for label in ("correct", "incorrect"):
            write_wav(folder / f"{index}_{label}.wav")
            names.append(f"{index}_{label}.wav")
    table, _ = units_table(tmp_path, names)
    out = tmp_path / "ssc"
    result = run(
        CONVERT, "--layout", "storycloze", "--input_dir", str(folder), "--units", table, "--output_dir", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 pairs" in result.stdout
    again = run(
        CONVERT, "--layout", "storycloze", "--input_dir", str(folder), "--units", table, "--output_dir", str(out)
    )
    assert again.returncode == 2 and "already exists" in again.stderr

    demo = os.path.join(REPO, "data", "demo", "eval", "tsc.parquet")
    result = run(
        EVALUATE, "--model_name_or_path", tiny_unit_lm_dir, "--benchmarks", f"ssc={out}", f"tsc={demo}",
        "--max_pairs", "60", "--output_dir", str(tmp_path / "results"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| ssc |" in result.stdout and "| tsc |" in result.stdout and "mean" in result.stdout
    report = json.loads((tmp_path / "results" / "likelihood_eval.json").read_text())
    assert report["mean_nll"] is True and report["dtype"] == "float32"
    assert report["results"]["ssc"]["num_pairs"] == 6 and report["results"]["tsc"]["num_pairs"] == 60
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir).eval()
    expected = reference_score(model, load_pair_benchmark("tsc", demo, 500, max_pairs=60))
    assert report["results"]["tsc"]["score"] == pytest.approx(expected) and expected != 50.0
    assert report["results"]["tsc"]["pairs_per_second"] > 0
    assert (tmp_path / "results" / "likelihood_eval.md").read_text().startswith("| benchmark |")


def test_results_replace_an_earlier_run_and_a_warning_names_what_it_drops(tmp_path, caplog):
    """A second run into the same folder replaces the first one's files; the benchmarks of the first that the
    second does not score are named in one warning, and a run that scores them all again warns of nothing."""

    def result(score):
        return {"score": score, "num_pairs": 4, "num_groups": 2, "likelihood": "mean", "aggregation": "pairs"}

    write_results(str(tmp_path), {"tsc_s2t": result(75.0), "tsc_t2t": result(100.0), "ssc": result(50.0)}, {})
    with caplog.at_level("WARNING", logger="slam_recipes.evaluation.likelihood"):
        json_path, md_path = write_results(str(tmp_path), {"tsc_t2t": result(87.5)}, {"run": 2})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"{json_path}: replacing an earlier run's results; its ssc, tsc_s2t are not scored in this run (score them "
        "in one run to keep them together, or give another output_dir)"
    ]
    with open(json_path) as f:
        assert json.load(f) == {"run": 2, "results": {"tsc_t2t": result(87.5)}}
    with open(md_path) as f:
        markdown = f.read()
    assert "| tsc_t2t | 87.50 |" in markdown and "tsc_s2t" not in markdown
    caplog.clear()
    with caplog.at_level("WARNING", logger="slam_recipes.evaluation.likelihood"):
        write_results(str(tmp_path), {"tsc_t2t": result(90.0), "ssc": result(52.0)}, {})
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("case", ["out_of_vocab", "text_lm", "no_model", "no_benchmarks"])
def test_evaluate_bad_input_one_line_exit_2_nothing_written(tmp_path, tiny_unit_lm_dir, tiny_text_lm_dir, case):
    out = tmp_path / "results"
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{"positive": [1, 2], "negative": [3, 4]}, {"positive": [1], "negative": [512]}]
    )
    good = write_jsonl(tmp_path / "good.jsonl", [{"positive": [1, 2], "negative": [3, 4]}])
    cli, message = {
        "out_of_vocab": (["--model_name_or_path", tiny_unit_lm_dir, "--benchmarks", bad],
                         "bad.jsonl column 'negative' row 1: unit id 512 outside [0, 500)"),
        "text_lm": (["--model_name_or_path", tiny_text_lm_dir, "--benchmarks", good],
                    "has vocab_size 1000, the unit tokenizer has 502"),
        "no_model": (["--model_name_or_path", str(tmp_path / "missing"), "--benchmarks", good],
                     "missing: no such folder"),
        "no_benchmarks": (["--model_name_or_path", tiny_unit_lm_dir], "benchmarks is empty"),
    }[case]  # fmt: skip
    result = run(EVALUATE, *cli, "--output_dir", str(out))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not out.exists()


# -- during training --------------------------------------------------------------------------------------------------
def test_benchmarks_are_scored_and_logged_at_each_evaluation(tmp_path, tiny_unit_lm_dir):
    from datasets import Dataset

    from slam_recipes.data.packing import build_collator
    from slam_recipes.evaluation.likelihood import load_benchmarks
    from slam_recipes.training.arguments import PretrainConfig
    from slam_recipes.training.trainer import UnitLMTrainer

    demo = os.path.join(REPO, "data", "demo", "eval")
    benchmarks = load_benchmarks([f"tsc={demo}/tsc.parquet", f"swuggy={demo}/swuggy.parquet"], 500, max_pairs=60)
    rows = Dataset.from_dict({"input_ids": [[1, 5, 6, 7, 1], [1, 8, 9, 1]] * 4})
    args = PretrainConfig(
        output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none", max_steps=2, eval_strategy="steps",
        eval_steps=1, per_device_train_batch_size=2, save_strategy="no", metric_for_best_model="eval_tsc",
    )  # fmt: skip
    trainer = UnitLMTrainer(
        model=build_unit_lm(tiny_unit_lm_dir),
        args=args,
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=build_collator("none"),
        processing_class=build_unit_tokenizer(500),
        benchmarks=benchmarks,
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval_tsc" in h]
    assert [h["step"] for h in logged] == [1, 2]
    assert trainer.state.best_metric == max(h["eval_tsc"] for h in logged)  # usable as metric_for_best_model
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_tsc", "eval_swuggy"} <= set(metrics)
    # The last logged evaluation (step 2, after the last update) and this one score the trained model as a
    # one-sample-at-a-time computation does (the trainer rounds to 2 decimals).
    expected = {name: reference_score(trainer.model, benchmarks[name]) for name in ("tsc", "swuggy")}
    assert expected["tsc"] != 50.0  # a sign error (100 − score) shows
    for name in ("tsc", "swuggy"):
        assert metrics[f"eval_{name}"] == logged[-1][f"eval_{name}"] == pytest.approx(expected[name], abs=0.005)


def test_dpo_trainer_scores_benchmarks_too(tmp_path, tiny_unit_lm_dir):
    from slam_recipes.evaluation.likelihood import load_benchmarks
    from slam_recipes.modeling.unit_lm import make_reference_model
    from slam_recipes.preference.pairs import build_preference_datasets
    from slam_recipes.training.arguments import SlamDPOConfig
    from slam_recipes.training.trainer import UnitDPOTrainer

    pairs, _ = build_preference_datasets(
        [os.path.join(REPO, "data/demo/dpo")], num_units=500, dataset_split="validation"
    )
    model = build_unit_lm(tiny_unit_lm_dir)
    args = SlamDPOConfig(
        output_dir=str(tmp_path / "o"), use_cpu=True, bf16=False, report_to="none", max_steps=1, save_strategy="no",
        per_device_train_batch_size=4, per_device_eval_batch_size=4,
    )  # fmt: skip
    trainer = UnitDPOTrainer(
        model=model,
        ref_model=make_reference_model(model),
        args=args,
        train_dataset=pairs,
        eval_dataset=pairs.select(range(8)),
        processing_class=build_unit_tokenizer(500),
        benchmarks=load_benchmarks([f"tsc={REPO}/data/demo/eval/tsc.parquet"], 500, max_pairs=30),
    )
    metrics = trainer.evaluate()
    assert "eval_rewards/margins" in metrics
    expected = reference_score(trainer.model, trainer.benchmarks["tsc"])
    assert metrics["eval_tsc"] == pytest.approx(expected, abs=0.005) and expected != 50.0
    assert any("eval_tsc" in h for h in trainer.state.log_history)
