import os
import re

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIGS, write_config, write_jsonl
from datasets import Dataset, DatasetDict

from slam_recipes.data.packing import PackedRowsCollator, build_collator, pack, padding_free_is_exact
from slam_recipes.data.sources import (
    build_pretraining_datasets,
    chunk_offsets,
    count_tokens,
    load_unit_datasets,
    mix,
    normalize_batch,
)
from slam_recipes.errors import DataError
from slam_recipes.modeling.unit_lm import build_unit_lm
from slam_recipes.units import units_to_string

UTTERANCES = [[3, 4, 5], [7], [9, 9, 10, 11, 11, 11], [0, 499]]
EXPECTED = [[1, 5, 6, 7, 1], [1, 9, 1], [1, 11, 11, 12, 13, 13, 13, 1], [1, 2, 501, 1]]


def load(source, **kwargs):
    kwargs.setdefault("num_units", 500)
    return load_unit_datasets([str(source)], **kwargs)


# -- input formats -----------------------------------------------------------------------------------------------------
def test_units_jsonl(tmp_path):
    ds = load(write_jsonl(tmp_path / "u.jsonl", [{"units": u} for u in UTTERANCES]))
    assert ds["input_ids"] == EXPECTED
    assert ds.features["input_ids"].feature.dtype == "uint16"
    assert ds.column_names == ["input_ids"]


def test_slamkit_features_jsonl(tmp_path):
    rows = [{"units": u, "duration": [1] * len(u), "file_name": f"{i}.flac"} for i, u in enumerate(UTTERANCES)]
    assert load(write_jsonl(tmp_path / "f.jsonl", rows))["input_ids"] == EXPECTED


def test_slamkit_tokens_jsonl(tmp_path):
    rows = [{"audio_repr": units_to_string(u)} for u in UTTERANCES]
    assert load(write_jsonl(tmp_path / "t.jsonl", rows))["input_ids"] == EXPECTED


def test_parquet_arrow_glob_and_save_to_disk(tmp_path):
    table = Dataset.from_dict({"units": UTTERANCES})
    table.to_parquet(str(tmp_path / "a.parquet"))
    assert load(tmp_path / "a.parquet")["input_ids"] == EXPECTED
    # arrow file written by save_to_disk of a single dataset
    table.save_to_disk(str(tmp_path / "saved"))
    assert load(tmp_path / "saved")["input_ids"] == EXPECTED
    arrow_file = next((tmp_path / "saved").glob("data-*.arrow"))
    assert load(arrow_file)["input_ids"] == EXPECTED
    # glob over two files: both loaded, in name order
    write_jsonl(tmp_path / "p1.jsonl", [{"units": u} for u in UTTERANCES[:2]])
    write_jsonl(tmp_path / "p2.jsonl", [{"units": u} for u in UTTERANCES[2:]])
    assert load(tmp_path / "p*.jsonl")["input_ids"] == EXPECTED


def test_dataset_dict_folder_and_split_folder(tmp_path):
    DatasetDict(
        {"train": Dataset.from_dict({"units": UTTERANCES}), "validation": Dataset.from_dict({"units": [[1]]})}
    ).save_to_disk(str(tmp_path / "dd"))
    assert load(tmp_path / "dd")["input_ids"] == EXPECTED
    assert load(tmp_path / "dd", split="validation")["input_ids"] == [[1, 3, 1]]
    folder = tmp_path / "files"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"units": u} for u in UTTERANCES])
    write_jsonl(folder / "validation.jsonl", [{"units": [2]}])
    assert load(folder)["input_ids"] == EXPECTED
    assert load(folder, split="validation")["input_ids"] == [[1, 4, 1]]


def test_units_column_option(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"codes": u, "units": "not this"} for u in UTTERANCES])
    assert load(path, units_column="codes")["input_ids"] == EXPECTED


# -- options -------------------------------------------------------------------------------------------------------------
def test_dedup_bos_eos_and_length_filters(tmp_path):
    path = write_jsonl(tmp_path / "u.jsonl", [{"units": u} for u in UTTERANCES])
    assert load(path, dedup=True)["input_ids"][2] == [1, 11, 12, 13, 1]
    assert load(path, add_bos_eos=False)["input_ids"][0] == [5, 6, 7]
    assert load(path, min_units=2, max_units=3)["input_ids"] == [EXPECTED[0], EXPECTED[3]]


def test_chunking_to_context_length_keeps_every_token():
    values = np.arange(25) % 500
    ids, offsets = normalize_batch(
        values, np.array([0, 10, 25]), num_units=500, label="x", first_row=0, context_length=4
    )
    lengths = np.diff(offsets)
    assert lengths.max() <= 4
    assert ids.size == 25 + 4  # every unit plus BOS/EOS per utterance
    np.testing.assert_array_equal(chunk_offsets(np.array([0, 9, 10]), 4), [0, 4, 8, 9, 10])


# Utterances longer than the context (4 tokens here) are framed whole, then cut: only the first piece starts with
# <S>, only the last ends with it; continuation pieces start mid-utterance with a unit (slamkit does the same).
LONG_UTTERANCES = [[0, 1, 2, 3, 4, 5, 6, 7, 8], [5], [0, 1, 2], [7, 8]]
LONG_PIECES = [
    [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 1],  # <S> 2..10 <S>: 11 tokens, three pieces
    [1, 7, 1],
    [1, 2, 3, 4], [1],  # the closing <S> alone in the last piece
    [1, 9, 10, 1],  # exactly the context: one piece
]  # fmt: skip
LONG_PIECES_UNFRAMED = [[2, 3, 4, 5], [6, 7, 8, 9], [10], [7], [2, 3, 4], [9, 10]]


def _flat(utterances):
    return np.concatenate(utterances), np.concatenate([[0], np.cumsum([len(u) for u in utterances])])


def _rows(ids, offsets):
    return [ids[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def test_long_utterances_are_framed_once_then_cut(tmp_path):
    ids, offsets = normalize_batch(*_flat(LONG_UTTERANCES), num_units=500, label="x", first_row=0, context_length=4)
    assert _rows(ids, offsets) == LONG_PIECES
    ids, offsets = normalize_batch(
        *_flat(LONG_UTTERANCES), num_units=500, label="x", first_row=0, context_length=4, add_bos_eos=False
    )
    assert _rows(ids, offsets) == LONG_PIECES_UNFRAMED
    # The same pieces through the loader (datasets.map, Arrow lists), as training reads them.
    path = write_jsonl(tmp_path / "long.jsonl", [{"units": u} for u in LONG_UTTERANCES])
    assert load(path, context_length=4)["input_ids"] == LONG_PIECES


def test_training_rows_are_framed_as_evaluation_frames_them(tmp_path):
    """An utterance within the context is one training row, exactly the `<S> units <S>` the benchmarks score."""
    from slam_recipes.evaluation.likelihood import frame

    path = write_jsonl(tmp_path / "u.jsonl", [{"units": u} for u in LONG_UTTERANCES])
    assert load(path, context_length=11)["input_ids"] == [r.tolist() for r in frame(*_flat(LONG_UTTERANCES))]


def test_long_utterance_pieces_match_framing_then_fixed_size_cuts():
    """Against a plain reference: frame each utterance `<S> u+2 … <S>`, cut it every `context_length` tokens."""
    rng = np.random.default_rng(0)
    utterances = [rng.integers(0, 500, size=int(n)).tolist() for n in rng.integers(1, 60, size=300)]
    for context_length in (4, 7, 16, 61, 62, 64):
        expected = []
        for units in utterances:
            framed = [1] + [u + 2 for u in units] + [1]
            expected += [framed[i : i + context_length] for i in range(0, len(framed), context_length)]
        ids, offsets = normalize_batch(
            *_flat(utterances), num_units=500, label="x", first_row=0, context_length=context_length
        )
        assert _rows(ids, offsets) == expected, context_length


def test_mixing_with_ratios_and_concatenation():
    a = Dataset.from_dict({"input_ids": [[1, 2, 1]] * 100})
    b = Dataset.from_dict({"input_ids": [[1, 3, 1]] * 100})
    assert len(mix([a, b])) == 200
    mixed = mix([a, b], ratios=[3, 1], seed=0)
    share_a = sum(row == [1, 2, 1] for row in mixed["input_ids"]) / len(mixed)
    assert 0.65 < share_a < 0.85  # sampled 3:1 until `a` runs out
    with pytest.raises(DataError, match="2 values for 3 datasets"):
        mix([a, b, a], ratios=[1, 1])


def test_held_out_validation_split(tmp_path):
    path = write_jsonl(tmp_path / "u.jsonl", [{"units": [i % 500, (i + 1) % 500]} for i in range(200)])
    train, evaluation = build_pretraining_datasets([path], num_units=500, validation_fraction=0.1, packing="none")
    assert (len(train), len(evaluation)) == (180, 20)
    assert not {tuple(r) for r in train["input_ids"]} & {tuple(r) for r in evaluation["input_ids"]}


# -- bad input -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"units": [1, 2]}, {"units": [3, 500]}], r"bad.jsonl row 1: unit id 500 outside \[0, 500\)"),
        ([{"units": [1, -4]}], r"bad.jsonl row 0: unit id -4 outside"),
        ([{"units": [1]}, {"units": [2]}, {"units": []}], r"bad.jsonl row 2: empty unit sequence"),
        ([{"audio_repr": "<Un1>"}, {"audio_repr": ""}], r"bad.jsonl row 1: empty unit sequence"),
        ([{"audio_repr": "<Un1>"}, {"audio_repr": "<Un2>oops"}], r"bad.jsonl row 1: unit string holds .*'oops'"),
        ([{"text": "hi"}], r"bad.jsonl: no unit column: expected 'units'"),
        ([{"units": ["a", "b"]}], r"bad.jsonl: column 'units' holds lists of string"),
        ([{"units": 5}], r"bad.jsonl: column 'units' holds int64"),
    ],
    ids=[
        "id-too-large",
        "negative-id",
        "empty-row",
        "empty-string",
        "not-units",
        "missing-column",
        "strings",
        "scalar",
    ],
)
def test_bad_rows_name_file_and_row(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message):
        load(path)


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="missing column 'codes'"):
        load(write_jsonl(tmp_path / "u.jsonl", [{"units": [1]}]), units_column="codes")
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        load(tmp_path / "nope.jsonl")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="cannot load split 'validation'"):
        load(tmp_path, split="validation")  # a folder without validation files
    with pytest.raises(DataError, match=r"u.jsonl: data files have no 'validation' split"):
        load(tmp_path / "u.jsonl", split="validation")  # never silently evaluate on the training file
    # what `datasets` wraps in "An error occurred while generating the dataset" is said on the same line
    (tmp_path / "cut.jsonl").write_text('{"units": [1, 2]}\n{"units": [1,\n')
    with pytest.raises(DataError, match=r"cut.jsonl: cannot load split 'train': .*: JSON parse error: .* in row 1$"):
        load(tmp_path / "cut.jsonl")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_jsonl(mixed / "a.jsonl", [{"units": [1]}])
    write_jsonl(mixed / "b.jsonl", [{"codes": [2]}])
    with pytest.raises(DataError, match=r"mixed: cannot load split 'train': .*: Couldn't cast … because column names"):
        load(mixed)


# -- mixtures that cannot be sampled: one line naming the source, before anything is written ------------------------
@pytest.fixture
def kept_and_short(tmp_path):
    """Two sources: every row of the second is shorter than min_units=2."""
    kept = write_jsonl(tmp_path / "kept.jsonl", [{"units": [1, 2, 3]}] * 10)
    short = write_jsonl(tmp_path / "short.jsonl", [{"units": [4]}] * 10)
    return kept, short


def test_mixture_source_filtered_to_nothing_is_named(kept_and_short):
    kept, short = kept_and_short
    message = r"short\.jsonl: no rows to sample, but dataset_ratios gives it 1 .*min_units"
    for strategy in ("first_exhausted", "all_exhausted"):
        with pytest.raises(DataError, match=message):
            load_unit_datasets([kept, short], num_units=500, ratios=[1, 1], min_units=2, stopping_strategy=strategy)
    # Ratio 0: never drawn, so an empty source is harmless under first_exhausted; every row comes from `kept`.
    mixed = load_unit_datasets([kept, short], num_units=500, ratios=[1, 0], min_units=2)
    assert mixed["input_ids"] == [[1, 3, 4, 5, 1]] * 10


def test_zero_ratio_under_all_exhausted_is_named_before_loading(kept_and_short, tmp_path):
    kept, short = kept_and_short
    message = r"short\.jsonl: dataset_ratios gives it 0, so mixture_stopping_strategy all_exhausted would never"
    with pytest.raises(DataError, match=message):
        load_unit_datasets([kept, short], num_units=500, ratios=[1, 0], stopping_strategy="all_exhausted")
    missing = str(tmp_path / "missing.jsonl")  # refused from the ratios alone: no source is read first
    with pytest.raises(DataError, match=r"missing\.jsonl: dataset_ratios gives it 0"):
        load_unit_datasets([kept, missing], num_units=500, ratios=[1, 0], stopping_strategy="all_exhausted")
    rows = Dataset.from_dict({"input_ids": [[1, 2, 1]] * 4})
    with pytest.raises(DataError, match="dataset 1: dataset_ratios gives it 0"):  # `mix` alone names by position
        mix([rows, rows], ratios=[1, 0], stopping_strategy="all_exhausted")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min_units", "2", "--dataset_ratios", "1", "1"], r"short\.jsonl: no rows to sample"),
        (
            ["--dataset_ratios", "1", "0", "--mixture_stopping_strategy", "all_exhausted"],
            r"short\.jsonl: dataset_ratios gives it 0",
        ),
    ],
    ids=["filtered-out", "zero-ratio-all-exhausted"],
)
def test_unsampleable_mixture_exits_2_through_the_recipe(monkeypatch, capsys, tmp_path, kept_and_short, args, message):
    import runpy
    import sys

    from conftest import REPO

    script = os.path.join(REPO, "recipes", "pretrain.py")
    out = tmp_path / "out"
    config = os.path.join(REPO, "recipes", "demo", "pretrain.yaml")
    argv = [script, "--config", config, "--output_dir", str(out), "--validation_split", "", "--dataset_name"]
    monkeypatch.setattr(sys, "argv", [*argv, *kept_and_short, *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(script, run_name="__main__")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2
    assert len(lines) == 1 and re.search(message, lines[0]), err[-2000:]
    assert "Traceback" not in err
    assert not out.exists()


# -- packing -------------------------------------------------------------------------------------------------------------
def _docs(n=300, seed=0, max_len=40):
    rng = np.random.default_rng(seed)
    return [rng.integers(2, 502, size=int(rng.integers(1, max_len))).tolist() for _ in range(n)]


def test_padding_free_packing_conserves_documents():
    docs = _docs()
    packed = pack(Dataset.from_dict({"input_ids": docs}), 64, "padding_free")
    rebuilt = []
    for row, lengths in zip(packed["input_ids"], packed["seq_lengths"], strict=True):
        assert len(row) <= 64 and sum(lengths) == len(row)
        starts = np.cumsum([0] + lengths[:-1])
        rebuilt += [row[s : s + n] for s, n in zip(starts, lengths, strict=True)]
    assert sorted(map(tuple, rebuilt)) == sorted(map(tuple, docs))  # nothing lost, nothing duplicated
    assert len(packed) < len(docs) / 2  # and the rows really are packed


def test_block_packing_conserves_the_token_stream():
    docs = _docs(seed=1)
    packed = pack(Dataset.from_dict({"input_ids": docs}), 64, "block")
    assert all(len(r) == 64 for r in packed["input_ids"][:-1])
    assert [t for r in packed["input_ids"] for t in r] == [t for d in docs for t in d]
    assert count_tokens(packed) == sum(map(len, docs))


def test_collators_positions_labels_and_boundaries():
    examples = [
        {"input_ids": [1, 5, 6, 1, 1, 7, 1], "seq_lengths": [4, 3]},
        {"input_ids": [1, 8, 1], "seq_lengths": [3]},
    ]
    rows = PackedRowsCollator()(examples)
    assert "attention_mask" not in rows
    assert rows["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 0, 0, 0, 0]]
    assert rows["labels"].tolist() == [[-100, 5, 6, 1, -100, 7, 1], [-100, 8, 1, -100, -100, -100, -100]]
    flat = build_collator("padding_free", "flash_attention_2")(examples)
    assert flat["input_ids"].shape == (1, 10)
    assert flat["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 2]]
    assert flat["cu_seq_lens_q"].tolist() == [0, 4, 7, 10]
    padded = build_collator("block")([{"input_ids": [1, 5, 1]}, {"input_ids": [1, 1]}])
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert padded["labels"].tolist() == [[1, 5, 1], [1, 1, -100]]


# Every base-LM family with transformers' sdpa, and OPT with sdpa_varlen: transformers 5 builds OPT's sdpa/eager
# mask without `position_ids`, so its packed documents see each other; sdpa_varlen reads the boundaries itself.
KERNELS = [(model_type, "sdpa") for model_type in sorted(TINY_CONFIGS)] + [("opt", "sdpa_varlen")]


@pytest.mark.parametrize(("model_type", "attn_implementation"), KERNELS, ids=["-".join(k) for k in KERNELS])
@pytest.mark.parametrize("flat", [False, True], ids=["rows", "flattened"])
def test_packed_logits_equal_separate_documents(tmp_path, model_type, attn_implementation, flat):
    """No attention across documents and positions restarting per document: a packed row gives each document
    exactly the logits it gets alone (the second path: transformers' own sdpa, one document per forward). The probe
    agrees: it accepts exactly the models that match, and OPT with sdpa, whose documents see each other, fails."""
    folder = write_config(tmp_path, TINY_CONFIGS[model_type])
    torch.manual_seed(0)
    model = build_unit_lm(folder, twist_init=False, attn_implementation=attn_implementation).eval()
    reference = build_unit_lm(folder, twist_init=False, attn_implementation="sdpa").eval()
    reference.load_state_dict(model.state_dict())
    docs = [[1, 5, 9, 33, 1], [1, 70, 71, 1], [1, 400, 401, 402, 403, 1]]
    example = {"input_ids": [t for d in docs for t in d], "seq_lengths": [len(d) for d in docs]}
    layout = "sdpa_varlen" if flat else "sdpa"  # the flat row with `cu_seq_lens` of varlen kernels, or packed rows
    batch = build_collator("padding_free", layout)([example])
    batch.pop("labels")
    batch["use_cache"] = False  # sdpa derives the packed mask only without a KV cache (PackedRowsCollator sets it)
    with torch.no_grad():
        packed = model(**batch).logits[0]
        separate = torch.cat([reference(input_ids=torch.tensor([d])).logits[0] for d in docs])
    if (model_type, attn_implementation) == ("opt", "sdpa"):
        assert not padding_free_is_exact(model, layout)
        first = len(docs[0])  # the first document has nothing before it; the others attend to it
        torch.testing.assert_close(packed[:first], separate[:first], atol=1e-5, rtol=1e-5)
        assert (packed[first:] - separate[first:]).abs().max() > 1e-2
    else:
        assert padding_free_is_exact(model, layout)
        torch.testing.assert_close(packed, separate, atol=1e-5, rtol=1e-5)


def test_prepared_rows_are_cached_on_disk(tmp_path):
    path = write_jsonl(tmp_path / "u.jsonl", [{"units": u} for u in UTTERANCES])
    first = load(path)
    second = load(path)
    assert first.cache_files and first.cache_files[0]["filename"] == second.cache_files[0]["filename"]


def test_check_packing_refuses_inexact_padding_free(tmp_path):
    """OPT with sdpa is refused for the right reason (its mask lets documents see each other; its positions do
    restart, which the test above shows with sdpa_varlen), and accepted with sdpa_varlen in either layout."""
    from slam_recipes.data.packing import check_packing

    folder = write_config(tmp_path / "opt", TINY_CONFIGS["opt"])
    opt = build_unit_lm(folder, twist_init=False, attn_implementation="sdpa")
    with pytest.raises(DataError, match="not exact for OPTForCausalLM with attn_implementation=sdpa .*: attention "
                       r"crosses documents \(its sdpa mask ignores the document boundaries\); use attn_implementation: "
                       "sdpa_varlen"):  # fmt: skip
        check_packing(opt, "padding_free", "sdpa")
    check_packing(opt, "block", "sdpa")  # the fallback is always allowed
    opt_varlen = build_unit_lm(folder, twist_init=False, attn_implementation="sdpa_varlen")
    check_packing(opt_varlen, "padding_free", "sdpa_varlen")  # one flat row with cu_seq_lens
    check_packing(opt_varlen, "padding_free", None)  # packed rows, boundaries from the restarting positions
    qwen = build_unit_lm(write_config(tmp_path / "q", TINY_CONFIGS["qwen2"]), twist_init=False)
    check_packing(qwen, "padding_free", None)


# -- TRL's dataset mixture form ----------------------------------------------------------------------------------------
def test_a_mixture_is_the_short_form_with_each_source_carrying_its_own_options(tmp_path):
    """`datasets` entries (TRL's DatasetMixtureConfig form) give the same rows as the short form they stand for, and
    carry per-source options the short form cannot: a split, a config, the columns kept, a fraction."""
    a = write_jsonl(tmp_path / "a.jsonl", [{"units": [i, i + 1], "note": "x"} for i in range(20)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"units": [100 + i]} for i in range(30)])
    short = build_pretraining_datasets([a, b], dataset_ratios=[0.7, 0.3], num_units=500, packing="none", seed=3)
    mixture = [{"path": a, "fraction": 0.7}, {"path": b, "fraction": 0.3}]
    long, _ = build_pretraining_datasets(datasets=mixture, num_units=500, packing="none", seed=3)
    assert long["input_ids"] == short[0]["input_ids"] and len(long) > 0
    concatenated, _ = build_pretraining_datasets(datasets=[{"path": a}, {"path": b}], num_units=500, packing="none")
    assert len(concatenated) == 50  # no fractions: every row of both, as the short form without ratios

    # Per-source split and columns: the train split of one saved DatasetDict, the validation split of another.
    folder = str(tmp_path / "dd")
    DatasetDict({
        "train": Dataset.from_dict({"units": [[1, 2]] * 3, "extra": [0] * 3}),
        "validation": Dataset.from_dict({"units": [[7, 8, 9]] * 2, "extra": [1] * 2}),
    }).save_to_disk(folder)  # fmt: skip
    rows = load_unit_datasets(
        [{"path": folder, "columns": ["units"]}, {"path": folder, "split": "validation"}], num_units=500
    )
    assert rows["input_ids"] == [[1, 3, 4, 1]] * 3 + [[1, 9, 10, 11, 1]] * 2
    # An evaluation split applies to every source, whatever split each names for training.
    validation = load_unit_datasets(
        [{"path": folder}, {"path": folder, "split": "train"}], num_units=500, split="validation", own_split=False
    )
    assert validation["input_ids"] == [[1, 9, 10, 11, 1]] * 4
    with pytest.raises(DataError, match=r"no column\(s\) \['unit'\]"):
        load_unit_datasets([{"path": a, "columns": ["unit"]}], num_units=500)
    with pytest.raises(DataError, match="data_dir and data_files apply to Hub datasets and folders of data files"):
        load_unit_datasets([{"path": a, "data_files": "x.jsonl"}], num_units=500)
