import re

import pytest
import torch
from conftest import TINY_CONFIGS, write_config
from transformers import AutoModelForCausalLM

from slam_recipes.errors import ConfigError
from slam_recipes.modeling.unit_lm import (
    build_unit_lm,
    check_vocab,
    count_parameters,
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


def counted_training_flops(model, length: int) -> float:
    """torch's FLOP counter over one training step (forward, loss, backward) of one row of `length` tokens, per
    token. Its formulas take shapes only, so a model on the meta device is counted at no cost."""
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.zeros(1, length, dtype=torch.long, device=model.device)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    return counter.get_total_flops() / length


def hand_count(config: dict, vocab: int = 502) -> tuple[int, int]:
    """From the config, by hand: (weights of the matmuls a step runs, parameters that no matmul uses).

    Matmuls: per layer the attention projections and the MLP, plus the LM head (vocab × hidden). No matmul: norm
    weights, biases (an addmm is counted as its mm), and lookup tables that are not also the head (an untied input
    embedding, OPT's learned positions; a tied embedding is the head's matrix)."""
    h, layers, kind = config["hidden_size"], config["num_hidden_layers"], config["model_type"]
    kv = config.get("num_key_value_heads", config["num_attention_heads"]) * h // config["num_attention_heads"]
    if kind in ("qwen2", "llama"):
        matmul = 2 * h * h + 2 * h * kv + 3 * h * config["intermediate_size"]  # q, o; k, v; gate, up, down
        other = 2 * h + (h + 2 * kv if kind == "qwen2" else 0)  # two RMSNorms; Qwen2's q/k/v biases
        final, lookups = h, 0 if config.get("tie_word_embeddings", True) else vocab * h
    elif kind == "gpt_neox":
        inner = config["intermediate_size"]
        matmul = 4 * h * h + 2 * h * inner  # fused qkv, dense; h→4h, 4h→h
        other = 4 * h + 3 * h + h + inner + h  # two LayerNorms (weight, bias); biases of qkv, dense, the MLP
        final, lookups = 2 * h, vocab * h  # untied here: the input embedding is a lookup only
    else:  # opt
        ffn = config["ffn_dim"]
        matmul = 4 * h * h + 2 * h * ffn  # q, k, v, out; fc1, fc2
        other = 4 * h + 4 * h + ffn + h  # two LayerNorms; biases of q, k, v, out, fc1, fc2
        final, lookups = 2 * h, (config["max_position_embeddings"] + 2) * h  # learned positions (offset 2)
    return layers * matmul + vocab * h, layers * other + final + lookups


FLOPS_CASES = {name: (config, 64) for name, config in TINY_CONFIGS.items()}
FLOPS_CASES.update({"qwen2.5-0.5b": (QWEN25_05B, 1024), "opt-125m": (OPT_125M, 1024)})


@pytest.mark.parametrize("name", sorted(FLOPS_CASES))
def test_flops_per_token_against_torch_flop_counter(tmp_path, name):
    """`model_flops_per_token`, 6N + 12·layers·hidden·context with N every parameter (tied ones once), against
    torch's FLOP counter on a training step: tiny models of each family on the CPU, the paper's OPT-125M and
    Qwen2.5-0.5B (the Slam model) on the meta device, at context 1024.

    The counter counts matmuls only, 2 FLOPs a multiply-add: 2 per weight per token forward and 4 backward (the
    gradients of input and weight) for every Linear, the LM head included; the attention scores and their weighted
    sum, 4·T·hidden per token and layer forward and 8 backward, over the whole T×T square (the counter does not halve
    for the causal mask, nor does the formula). Lookups, norms, biases, activations and the loss count 0. So the
    counter is rebuilt exactly from the config, and the formula exceeds it by exactly 6 FLOPs per parameter no
    matmul uses. Eager attention: the CPU sdpa kernel has no formula in the counter (its attention would count 0)."""
    config, context = FLOPS_CASES[name]
    device = "meta" if context > 64 else "cpu"
    with torch.device(device):
        model = build_unit_lm(write_config(tmp_path, config), twist_init=False, attn_implementation="eager")
    matmul, other = hand_count(config)
    assert count_parameters(model) == matmul + other  # the hand count covers every parameter, each once
    counted = counted_training_flops(model, context)
    attention = 12 * config["num_hidden_layers"] * config["hidden_size"] * context
    assert counted == 6 * matmul + attention
    formula = model_flops_per_token(model, context)
    assert formula - counted == 6 * other
    # what the formula's convention adds at the paper's scale: 0.018 % for the Slam model (norms and q/k/v biases),
    # 1.6 % for OPT-125M (its 2,050 × 768 learned-position table is 93 % of it)
    if name == "qwen2.5-0.5b":
        assert formula == 2_414_328_576  # issue 8's figure: 6 × 358,347,904 + 12 × 24 × 896 × 1024
        assert other == 24 * (2 * 896 + 896 + 2 * 128) + 896 and (formula - counted) / formula < 2e-4
    if name == "opt-125m":
        assert 0.015 < (formula - counted) / formula < 0.017


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


def test_a_model_that_is_not_there_is_named_as_such(tmp_path, monkeypatch):
    """What a stage that starts from a trained model says when the folder is missing or holds no model, rather than
    the Hub client's message about repo ids or connections (the tests run with HF_HUB_OFFLINE=1)."""
    from slam_recipes.modeling.interleaved import load_interleaved_tokenizer
    from slam_recipes.modeling.unit_lm import check_unit_lm

    (tmp_path / "outputs").mkdir()
    (tmp_path / "notes").mkdir()
    monkeypatch.chdir(tmp_path)
    cases = {
        str(tmp_path / "gone"): "no such folder$",
        "./gone": "no such folder$",
        "outputs/gone": r"no such folder, nor a Hub model \(",  # `outputs/` is here: a local path, most likely
        "notes": "no config.json in this folder: not a saved model$",
        "no-such-model": "cannot load the model: ",  # a Hub name: the client's own reason
    }
    for name, message in cases.items():
        checks = (
            lambda n: check_unit_lm(n, 500),  # DPO and evaluation
            lambda n: load_interleaved_tokenizer(n, 500),  # evaluation and generation
            lambda n: build_unit_lm(n, twist_init=True),  # pretraining
        )
        for check in checks:
            with pytest.raises(ConfigError, match=f"^{re.escape(name)}: {message}"):
                check(name)


def test_tokenizer_comes_from_a_unit_checkpoint(tmp_path, tiny_text_lm_dir):
    assert len(load_or_build_tokenizer(tiny_text_lm_dir, 500)) == 502  # text LM: a new unit tokenizer
    build_unit_tokenizer(20).save_pretrained(tmp_path)
    assert len(load_or_build_tokenizer(str(tmp_path), 500)) == 22  # unit checkpoint: its own tokenizer


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("twist_init", [False, True])
def test_the_utterance_boundary_embedding_trains(tmp_path, family, twist_init):
    """`<S>` (id 1) gets a gradient through the input lookup and PAD (id 0) none, whatever the base's own pad id: OPT
    pads with 1 (so do these tiny bases), and the embedding used to be built with padding_idx 1, leaving `<S>` at
    zero and frozen there (OPT, and Qwen2 / Llama configs that set a pad id)."""
    folder = write_config(tmp_path / "base", {**TINY_CONFIGS[family], "pad_token_id": 1})
    if twist_init:  # a text LM with weights and its own pad id 1, as facebook/opt-125m
        from transformers import AutoConfig

        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    embeddings = build_unit_lm(folder, num_units=500, twist_init=twist_init).get_input_embeddings()
    if not twist_init:  # initialised like every unit, not zeroed as a padding row (TWIST keeps the text LM's row)
        assert embeddings.weight[1].abs().sum() > 0
    embeddings(torch.tensor([[0, 1, 5, 1]])).sum().backward()
    grad = embeddings.weight.grad
    assert grad[1].abs().sum() > 0 and grad[5].abs().sum() > 0
    assert embeddings.padding_idx in (None, 0) and (embeddings.padding_idx is None or not grad[0].any())
