import numpy as np
import pytest
from conftest import TINY_CONFIGS, write_config
from transformers import AutoTokenizer

from slam_recipes.errors import DataError
from slam_recipes.units import build_unit_tokenizer, frame_units, parse_unit_string, units_to_string


def test_vocabulary_layout():
    tok = build_unit_tokenizer(500)
    assert len(tok) == 502
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 1)
    assert tok.convert_ids_to_tokens([0, 1, 2, 19, 501]) == ["<pad>", "<S>", "<Un0>", "<Un17>", "<Un499>"]
    assert tok("<Un17><Un5>").input_ids == [19, 7]
    assert tok("<Un17> <Un5>").input_ids == [19, 7]


def test_num_units_is_configurable():
    tok = build_unit_tokenizer(1000)
    assert len(tok) == 1002
    assert tok("<Un999>").input_ids == [1001]


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_round_trip_from_saved_folder_next_to_base_lm_config(tmp_path, model_type):
    """AutoTokenizer must load our tokenizer even where config.json names a base LM with its own tokenizer class
    (transformers forces Qwen2Tokenizer for qwen2, which drops unit strings unless they are added tokens)."""
    config = dict(TINY_CONFIGS[model_type], vocab_size=502)
    folder = write_config(tmp_path / model_type, config)
    build_unit_tokenizer(500).save_pretrained(folder)

    tok = AutoTokenizer.from_pretrained(folder)
    assert tok("<Un17><Un5>").input_ids == [19, 7]
    assert tok("<S><Un0><Un499><S>").input_ids == [1, 2, 501, 1]
    assert len(tok) == 502
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 1)
    assert tok.decode([1, 19, 7, 1]) == "<S><Un17><Un5><S>"
    assert tok.decode([1, 19, 7, 1], skip_special_tokens=True) == "<Un17><Un5>"


def test_frame_units_frames_every_row():
    units = np.array([0, 499, 7, 3, 3, 4])
    ids, offsets = frame_units(units, np.array([0, 2, 3, 6]))
    assert ids.dtype == np.uint16
    assert ids.tolist() == [1, 2, 501, 1, 1, 9, 1, 1, 5, 5, 6, 1]  # <S> u+2 <S> per row, worked out by hand
    assert offsets.tolist() == [0, 4, 7, 12]
    assert units.tolist() == [0, 499, 7, 3, 3, 4]  # the caller's unit indices are left as they were
    ids, offsets = frame_units(np.array([5]), np.array([0, 1]), dtype=np.int64)
    assert ids.dtype == np.int64 and ids.tolist() == [1, 7, 1] and offsets.tolist() == [0, 3]
    ids, offsets = frame_units(np.array([], dtype=np.int64), np.array([0]))  # a batch with every row filtered out
    assert ids.size == 0 and offsets.tolist() == [0]
    # A second path to the ids: the unit tokenizer reading the same rows as text, special tokens written out.
    ids, _ = frame_units(np.array([0, 499, 7]), np.array([0, 2, 3]))
    assert build_unit_tokenizer(500)("<S><Un0><Un499><S><S><Un7><S>").input_ids == ids.tolist()


def test_parse_unit_string():
    assert parse_unit_string("<Un3><Un49> <Un0>") == [3, 49, 0]
    assert parse_unit_string("") == []
    with pytest.raises(DataError, match=r"f.jsonl row 4: .*'hello'"):
        parse_unit_string("<Un3>hello<Un4>", "f.jsonl row 4")
    assert units_to_string([3, 49]) == "<Un3><Un49>"


def test_parse_unit_strings_equals_the_per_row_parser():
    """The Arrow-vectorised column parser against `parse_unit_string` row by row: whitespace, empty rows, ids of
    every width, and both Arrow string types."""
    import numpy as np
    import pyarrow as pa

    from slam_recipes.units import parse_unit_strings

    rng = np.random.default_rng(0)
    rows = ["".join(f"<Un{u}>" for u in rng.integers(0, 500, size=n)) for n in rng.integers(1, 60, size=200)]
    rows += [" <Un3>\t<Un49> <Un0>\n", "", "<Un0>", "<Un123456>", " "]
    expected = [parse_unit_string(row) for row in rows]
    for kind in (pa.string(), pa.large_string()):
        values, offsets = parse_unit_strings(pa.array(rows, type=kind), lambda i: f"row {i}")
        assert offsets.tolist() == np.concatenate([[0], np.cumsum([len(e) for e in expected])]).tolist()
        assert values.tolist() == [u for e in expected for u in e]
    for kind in (pa.string(), pa.large_string()):
        sliced = pa.array(rows, type=kind)[3:9]  # an Arrow slice starts at an offset into its buffers
        values, offsets = parse_unit_strings(sliced, str)
        assert values.tolist() == [u for e in expected[3:9] for u in e]
        assert np.diff(offsets).tolist() == [len(e) for e in expected[3:9]]
    values, offsets = parse_unit_strings(pa.array(["", " "]), str)  # no units at all: empty rows, caught later
    assert values.size == 0 and offsets.tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("<Un3><Ux4>", r"f.jsonl row 7: .*'<Ux4>'"),
        ("<Un3>hello", r"f.jsonl row 7: .*'hello'"),
        ("<Un3><Un>", r"f.jsonl row 7: .*'<Un>'"),
        ("<Un3", r"f.jsonl row 7: .*'<Un3'"),
        ("<Un3><Un12345678901>", r"f.jsonl row 7: unit id 12345678901 is outside any unit vocabulary"),
    ],
)
def test_parse_unit_strings_names_the_bad_row(bad, message):
    import pyarrow as pa

    from slam_recipes.units import parse_unit_strings

    with pytest.raises(DataError, match=message):
        parse_unit_strings(pa.array(["<Un1>", bad]), lambda i: f"f.jsonl row {i + 6}")
