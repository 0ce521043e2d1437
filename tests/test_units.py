import pytest
from conftest import TINY_CONFIGS, write_config
from transformers import AutoTokenizer

from slam_recipes.errors import DataError
from slam_recipes.units import build_unit_tokenizer, parse_unit_string, units_to_string


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


def test_parse_unit_string():
    assert parse_unit_string("<Un3><Un49> <Un0>") == [3, 49, 0]
    assert parse_unit_string("") == []
    with pytest.raises(DataError, match=r"f.jsonl row 4: .*'hello'"):
        parse_unit_string("<Un3>hello<Un4>", "f.jsonl row 4")
    assert units_to_string([3, 49]) == "<Un3><Un49>"
