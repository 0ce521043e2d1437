import pytest
import torch
from conftest import TINY_CONFIGS, write_config
from transformers import AutoModelForCausalLM

from slam_recipes.errors import ConfigError
from slam_recipes.model import (
    build_unit_lm,
    check_vocab,
    count_parameters,
    flops_per_token,
    load_or_build_tokenizer,
    model_flops_per_token,
)
from slam_recipes.units import build_unit_tokenizer

# The published configs of the paper's base LMs (Hub config.json values), written here: no download.
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
    "hidden_act": "silu",
    "bos_token_id": 151643,
    "eos_token_id": 151643,
}
OPT_125M = {
    "architectures": ["OPTForCausalLM"],
    "model_type": "opt",
    "hidden_size": 768,
    "ffn_dim": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 2048,
    "word_embed_proj_dim": 768,
    "do_layer_norm_before": True,
    "activation_function": "relu",
    "vocab_size": 50272,
    "pad_token_id": 1,
    "bos_token_id": 2,
    "eos_token_id": 2,
}


@pytest.mark.parametrize(
    "config, expected", [(QWEN25_05B, 358_347_904), (OPT_125M, 87_015_936)], ids=["qwen2.5-0.5b", "opt-125m"]
)
def test_paper_table6_parameter_counts(tmp_path, config, expected):
    folder = write_config(tmp_path / config["model_type"], config)
    model = build_unit_lm(folder, num_units=500, twist_init=False)
    assert count_parameters(model) == expected
    assert model.config.vocab_size == 502


def test_slam_flops_per_token(tmp_path):
    """Issue 8's figure: 6N + 12·layers·hidden·context = 2.414 GFLOP for the Slam model at context 1024."""
    model = build_unit_lm(write_config(tmp_path / "q", QWEN25_05B), twist_init=False)
    assert model_flops_per_token(model, 1024) == pytest.approx(2.414e9, rel=1e-3)
    assert flops_per_token(10, 2, 3, 4) == 6 * 10 + 12 * 2 * 3 * 4


def test_plain_model_class_and_special_tokens(tiny_config_dir):
    model = build_unit_lm(tiny_config_dir, num_units=500, twist_init=False)
    assert type(model).__name__ == "Qwen2ForCausalLM"  # no wrapper class
    for cfg in (model.config, model.generation_config):
        assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 1)
    assert model.get_input_embeddings().weight.shape[0] == 502
    assert model.get_output_embeddings().weight.shape[0] == 502


def test_twist_init_loads_text_lm_weights_then_resizes(tiny_text_lm_dir):
    text_lm = AutoModelForCausalLM.from_pretrained(tiny_text_lm_dir)
    model = build_unit_lm(tiny_text_lm_dir, num_units=500, twist_init=True)
    assert model.config.vocab_size == 502
    text_state = text_lm.state_dict()
    for name, tensor in model.state_dict().items():
        if "embed_tokens" in name or "lm_head" in name:
            torch.testing.assert_close(tensor, text_state[name][:502])
        else:
            torch.testing.assert_close(tensor, text_state[name], msg=name)
    # TWIST keeps the base's tied embeddings tied.
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_random_init_differs_from_text_lm(tiny_text_lm_dir):
    text_lm = AutoModelForCausalLM.from_pretrained(tiny_text_lm_dir)
    torch.manual_seed(123)
    model = build_unit_lm(tiny_text_lm_dir, num_units=500, twist_init=False)
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(model.state_dict()[name], text_lm.state_dict()[name])


def test_config_overrides_reach_the_model(tiny_config_dir):
    model = build_unit_lm(
        tiny_config_dir,
        num_units=100,
        twist_init=False,
        rope_theta=10000,
        attn_implementation="eager",
        torch_dtype="bfloat16",
        max_position_embeddings=128,
    )
    assert model.config.rope_parameters["rope_theta"] == 10000
    assert model.config.max_position_embeddings == 128
    assert model.config._attn_implementation == "eager"
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config.vocab_size == 102


def test_unknown_config_override_is_an_error(tiny_config_dir):
    with pytest.raises(ConfigError, match="'hiden_size' is not a field of the qwen2 config"):
        build_unit_lm(tiny_config_dir, twist_init=False, hiden_size=64)


def test_vocabulary_mismatch_is_an_error(tmp_path):
    model = build_unit_lm(write_config(tmp_path / "m", TINY_CONFIGS["qwen2"]), num_units=500, twist_init=False)
    with pytest.raises(ConfigError, match="tokenizer has 302 tokens, model vocab_size is 502"):
        check_vocab(build_unit_tokenizer(300), model)
    # A saved unit LM of 500 units continued with a recipe that asks for 300.
    model.save_pretrained(tmp_path / "unit-lm")
    build_unit_tokenizer(500).save_pretrained(tmp_path / "unit-lm")
    with pytest.raises(ConfigError, match="has a unit tokenizer of 500 units, the recipe asks for num_units=300"):
        build_unit_lm(str(tmp_path / "unit-lm"), num_units=300)


def test_tokenizer_comes_from_a_unit_checkpoint(tmp_path, tiny_text_lm_dir):
    assert len(load_or_build_tokenizer(tiny_text_lm_dir, 500)) == 502  # text LM: a new unit tokenizer
    build_unit_tokenizer(20).save_pretrained(tmp_path)
    assert len(load_or_build_tokenizer(str(tmp_path), 500)) == 22  # unit checkpoint: its own tokenizer
