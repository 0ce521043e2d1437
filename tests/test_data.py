import numpy as np
import pytest
import torch
from conftest import TINY_CONFIGS, write_config, write_jsonl
from datasets import Dataset, DatasetDict

from slam_recipes.data import (
    PackedRowsCollator,
    build_collator,
    build_pretraining_datasets,
    chunk_offsets,
    count_tokens,
    load_unit_datasets,
    mix,
    normalize_batch,
    pack,
    padding_free_is_exact,
)
from slam_recipes.errors import DataError
from slam_recipes.model import build_unit_lm
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


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("flat", [False, True], ids=["rows", "flattened"])
def test_packed_logits_equal_separate_documents(tmp_path, model_type, flat):
    """No attention across documents and positions restarting per document: a packed row gives each document
    exactly the logits it gets alone."""
    torch.manual_seed(0)
    model = build_unit_lm(
        write_config(tmp_path, TINY_CONFIGS[model_type]), twist_init=False, attn_implementation="sdpa"
    )
    model.eval()
    docs = [[1, 5, 9, 33, 1], [1, 70, 71, 1], [1, 400, 401, 402, 403, 1]]
    example = {"input_ids": [t for d in docs for t in d], "seq_lengths": [len(d) for d in docs]}
    collator = build_collator("padding_free", "flash_attention_2") if flat else PackedRowsCollator()
    batch = collator([example])
    batch.pop("labels")
    if flat:  # flash kernels read `cu_seq_lens`; here sdpa checks the same flat batch (packed mask needs no cache)
        batch["use_cache"] = False
    with torch.no_grad():
        packed = model(**batch).logits[0]
        separate = torch.cat([model(input_ids=torch.tensor([d])).logits[0] for d in docs])
    if model_type == "opt":  # learned positions ignore restarts: the probe must catch it, the recipes use `block`
        assert not padding_free_is_exact(model)
        assert not torch.allclose(packed, separate, atol=1e-2)
    else:
        assert padding_free_is_exact(model)
        torch.testing.assert_close(packed, separate, atol=1e-4, rtol=1e-4)


def test_prepared_rows_are_cached_on_disk(tmp_path):
    path = write_jsonl(tmp_path / "u.jsonl", [{"units": u} for u in UTTERANCES])
    first = load(path)
    second = load(path)
    assert first.cache_files and first.cache_files[0]["filename"] == second.cache_files[0]["filename"]


def test_check_packing_refuses_inexact_padding_free(tmp_path):
    from slam_recipes.data import check_packing

    opt = build_unit_lm(
        write_config(tmp_path / "opt", TINY_CONFIGS["opt"]), twist_init=False, attn_implementation="sdpa"
    )
    with pytest.raises(DataError, match="padding_free is not exact for OPTForCausalLM .* use packing: block"):
        check_packing(opt, "padding_free", "sdpa")
    check_packing(opt, "block", "sdpa")  # the fallback is always allowed
    qwen = build_unit_lm(write_config(tmp_path / "q", TINY_CONFIGS["qwen2"]), twist_init=False)
    check_packing(qwen, "padding_free", None)
