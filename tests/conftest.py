"""Offline by construction: no test reaches the Hugging Face Hub; tiny models are built from configs in tmp_path."""

import atexit
import json
import os
import shutil
import subprocess
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Datasets' cache in a fresh folder per test session, so cached preparation from another run never hides a bug;
# removed when the session ends.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="slam-tests-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny unit vocoder (textlesslib's HiFi-GAN layout) for the generation tests
TINY_VOCODER = {
    "num_embeddings": 500,
    "embedding_dim": 16,
    "model_in_dim": 16,
    "upsample_rates": [5, 4, 4, 4, 2],  # 640 samples per frame: 25 Hz units at 16 kHz
    "upsample_kernel_sizes": [11, 8, 8, 8, 4],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3, 7],
    "resblock_dilation_sizes": [[1, 3], [1, 3]],
    "dur_predictor_params": {
        "encoder_embed_dim": 16,
        "var_pred_hidden_dim": 16,
        "var_pred_kernel_size": 3,
        "var_pred_dropout": 0.5,
    },
}

# Small configs of the base-LM families the recipes name (Qwen2, OPT, Llama/SmolLM2, GPT-NeoX/Pythia).
TINY_CONFIGS = {
    "qwen2": {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "vocab_size": 1000,
        "tie_word_embeddings": True,
        "rope_theta": 1000000.0,
    },
    "llama": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "vocab_size": 1000,
        "tie_word_embeddings": True,
    },
    "gpt_neox": {
        "model_type": "gpt_neox",
        "architectures": ["GPTNeoXForCausalLM"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 256,
        "rotary_pct": 0.25,
        "vocab_size": 1000,
        "tie_word_embeddings": False,
    },
    "opt": {
        "model_type": "opt",
        "architectures": ["OPTForCausalLM"],
        "hidden_size": 32,
        "ffn_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 256,
        "word_embed_proj_dim": 32,
        "vocab_size": 1000,
        "do_layer_norm_before": True,
    },
}


def write_config(directory, config: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    return str(directory)


@pytest.fixture
def tiny_config_dir(tmp_path):
    """A folder holding only a tiny Qwen2 config.json (random init, no weights)."""
    return write_config(tmp_path / "tiny-qwen2", TINY_CONFIGS["qwen2"])


@pytest.fixture(scope="session")
def tiny_text_lm_dir(tmp_path_factory):
    """A tiny Qwen2 *text* LM with weights and a 1000-token vocabulary, standing in for Qwen2.5-0.5B."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = tmp_path_factory.mktemp("tiny-text-lm")
    torch.manual_seed(0)
    config = AutoConfig.for_model(**TINY_CONFIGS["qwen2"])
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_unit_lm_dir(tmp_path_factory):
    """A tiny random-init speech LM saved with its unit tokenizer, as the pretraining recipe leaves it."""
    import torch

    from slam_recipes.modeling.unit_lm import build_unit_lm
    from slam_recipes.units import build_unit_tokenizer

    folder = tmp_path_factory.mktemp("tiny-unit-lm")
    torch.manual_seed(0)
    build_unit_lm(write_config(folder, TINY_CONFIGS["qwen2"]), twist_init=False).save_pretrained(folder)
    build_unit_tokenizer(500).save_pretrained(folder)
    return str(folder)


def run_recipe(script: str, *args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    """`python <script> <args>` run in this process: the recipe's own `__main__` (argument parsing, `run_entry_point`
    and its exit code), without starting another interpreter and importing torch, transformers and TRL again.
    Returns the exit code and what it printed, as `subprocess.run` would."""
    import contextlib
    import io

    from slam_recipes.demo.report import run_script

    out, err = io.StringIO(), io.StringIO()
    saved_cwd = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_script(script, *args)
    finally:
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


def reference_pair_score(
    model, benchmark, mean: bool = True, autocast_dtype=None, near_tie: float | None = None
) -> float:
    """A pair benchmark's score (× 100) the plain way, independent of `slam_recipes.evaluation.likelihood`: every sequence scored
    alone (no batching, padding or de-duplication) by a float64 log-softmax of one forward pass; a pair counts 1 when
    the positive's log-likelihood (mean over the predicted tokens, or sum) is higher, ½ on a tie. With an `id`
    column, the mean over each (type, subtype, id) group, then over groups (ZeroSpeech 2021), else over pairs. With
    `near_tie`, a pair whose scores differ by less (but are not equal), which batching could flip, fails the test."""
    import torch

    def log_likelihood(ids) -> float:
        ids = torch.as_tensor([list(ids)], dtype=torch.long)
        with torch.no_grad(), torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(input_ids=ids).logits[0, :-1].double()
        picked = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])
        return float(picked.mean() if mean else picked.sum())

    outcomes = []
    for positive, negative in zip(benchmark.positive, benchmark.negative, strict=True):
        a, b = log_likelihood(positive), log_likelihood(negative)
        assert near_tie is None or a == b or abs(a - b) > near_tie, "a near-tie that float32 batching could flip"
        outcomes.append(1.0 if a > b else 0.5 if a == b else 0.0)
    columns = benchmark.columns
    keys = [c for c in ("type", "subtype", "id") if c in columns] if "id" in columns else []
    groups: dict = {}
    for row, outcome in enumerate(outcomes):
        groups.setdefault(tuple(columns[c][row] for c in keys) if keys else row, []).append(outcome)
    return 100 * sum(sum(g) / len(g) for g in groups.values()) / len(groups)


def write_jsonl(path, rows) -> str:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def tiny_text_lm_with_tokenizer(tmp_path_factory):
    """A tiny random Llama text LM with a byte-level tokenizer (BOS `<s>`), standing in for Llama-3.2-1B."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-text-lm-tok")
    vocab = {"<s>": 0, "</s>": 1}
    vocab.update({ch: i + 2 for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, bos_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A tiny random Whisper checkpoint + processor that transformers' ASR pipeline loads offline."""
    from tiny_whisper import make_tiny_whisper

    return make_tiny_whisper(str(tmp_path_factory.mktemp("tiny-whisper")))
