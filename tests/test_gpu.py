"""The CUDA paths no CPU test covers (`pytest -m gpu`; the default run skips them): sdpa_varlen's varlen flash kernel
on packed batches, and what bf16 changes against float32 in pairwise outcomes and in HuBERT units.

They need CUDA and skip without it. `SLAM_TEST_DEVICE=cpu pytest -m gpu tests/test_gpu.py` runs the same bodies on
the CPU, to check that they run and what they measure: there the varlen kernel is not reached (attention takes its
per-document path) and bf16 is emulated where the CPU lacks it, so slow (the HuBERT test then uses a tiny model)."""

import contextlib
import os

import numpy as np
import pytest
import torch
from conftest import write_config

DEVICE = os.environ.get("SLAM_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE.startswith("cuda") and not torch.cuda.is_available(),
        reason="needs CUDA (torch.cuda.is_available() is False); SLAM_TEST_DEVICE=cpu runs the bodies on the CPU",
    ),
]
ON_CUDA = DEVICE.startswith("cuda")

# Head size 64, as the Slam model's: the flash kernels' common case. Qwen2 has grouped KV heads; OPT pre-scales its
# queries (scaling 1.0) and is padding-free only through a kernel that reads the boundaries.
PACKED_CONFIGS = {
    "qwen2": {
        "model_type": "qwen2",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "vocab_size": 502,
        "tie_word_embeddings": True,
    },
    "opt": {
        "model_type": "opt",
        "hidden_size": 256,
        "ffn_dim": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 2048,
        "word_embed_proj_dim": 256,
        "do_layer_norm_before": True,
        "vocab_size": 502,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    },
}
# One packed row of 1,004 tokens: context-length documents, short ones, and one-token pieces (a chunked tail, or the
# padding of static shapes), which the kernel must also keep to themselves.
DOC_LENGTHS = [1, 37, 300, 1, 1, 129, 2, 450, 64, 19]


def _flat_grads(model) -> torch.Tensor:
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return grads


def _separate(model, docs, context) -> tuple[torch.Tensor, torch.Tensor]:
    """The second path: each document alone through transformers' sdpa. (logits, gradient of the packed loss:
    the mean next-token loss over every token after each document's first)."""
    logits, losses = [], []
    with context:
        for doc in docs:
            out = model(input_ids=torch.tensor([doc], device=DEVICE)).logits[0].float()
            losses.append(
                torch.nn.functional.cross_entropy(
                    out[:-1], torch.tensor(doc[1:], dtype=torch.long, device=DEVICE), reduction="sum"
                )
            )
            logits.append(out)
    (sum(losses) / sum(len(d) - 1 for d in docs)).backward()
    return torch.cat(logits).detach(), _flat_grads(model)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("regime", ["bf16-weights", "autocast"])
@pytest.mark.parametrize("family", sorted(PACKED_CONFIGS))
def test_varlen_flash_kernel_equals_sdpa_per_document(tmp_path, monkeypatch, family, regime):
    """A packed flat batch through `sdpa_varlen` (on CUDA its `_flash_varlen` path, PyTorch's varlen flash kernel)
    against each document alone through transformers' sdpa: logits and gradients, with bf16 weights (scoring) and
    with fp32 weights under bf16 autocast (the recipes' training).

    Tolerance: both paths round in bf16 (unit roundoff 2⁻⁸), differently, so neither equals the other to a fixed
    number of digits. The yardstick is bf16 itself: the error of the sdpa path against the same model in float32.
    If the kernel path is as accurate as sdpa's, the two differ by at most twice that (triangle inequality), so
    the test asserts packed-vs-separate ≤ 2 × separate-vs-float32, for logits (max abs) and gradients (relative
    norm). A kernel that let documents see each other misses that bound by far (asserted too)."""
    from slam_recipes.data.packing import build_collator
    from slam_recipes.modeling import attention
    from slam_recipes.modeling.unit_lm import build_unit_lm

    if ON_CUDA and attention._varlen_kernel() is None:
        pytest.skip("this PyTorch has no varlen flash kernel (torch.nn.attention.varlen.varlen_attn)")
    real, taken = attention._flash_varlen, []  # the kernel itself, recorded: did each call go through it?

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(attention, "_flash_varlen", recording)

    folder = write_config(tmp_path, PACKED_CONFIGS[family])
    torch.manual_seed(0)
    varlen = build_unit_lm(folder, twist_init=False, attn_implementation="sdpa_varlen").to(DEVICE).eval()
    sdpa = build_unit_lm(folder, twist_init=False, attn_implementation="sdpa").to(DEVICE).eval()
    sdpa.load_state_dict(varlen.state_dict())
    rng = np.random.default_rng(0)
    docs = [[1, *(rng.integers(2, 502, n - 1).tolist())] if n > 1 else [1] for n in DOC_LENGTHS]
    batch = build_collator("padding_free", "sdpa_varlen")(
        [{"input_ids": [t for d in docs for t in d], "seq_lengths": DOC_LENGTHS}]
    )
    assert batch["cu_seq_lens_q"].tolist() == np.concatenate([[0], np.cumsum(DOC_LENGTHS)]).tolist()
    batch = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    exact_logits, exact_grads = _separate(sdpa, docs, contextlib.nullcontext())  # float32
    if regime == "bf16-weights":
        varlen.to(torch.bfloat16)
        sdpa.to(torch.bfloat16)
        context = contextlib.nullcontext()
    else:
        context = torch.autocast(DEVICE.split(":")[0], dtype=torch.bfloat16)
    separate_logits, separate_grads = _separate(sdpa, docs, context)
    with context:
        packed = varlen(**batch)
    packed.loss.backward()
    packed_logits, packed_grads = packed.logits[0].float().detach(), _flat_grads(varlen)
    with context, torch.no_grad():  # no boundaries: one causal sequence, documents seeing each other
        leaked = varlen(input_ids=batch["input_ids"]).logits[0].float()

    assert (taken and all(taken)) if ON_CUDA else not taken  # the kernel ran, in every layer (CUDA only)
    precision = float((separate_logits - exact_logits).abs().max())
    assert precision > 0  # bf16 really ran
    kernel = float((packed_logits - separate_logits).abs().max())
    leak = float((leaked - separate_logits).abs().max())
    grad_precision = _relative(separate_grads, exact_grads)
    grad_kernel = _relative(packed_grads, separate_grads)
    print(  # shown with -s: the numbers behind the bounds
        f"{family} {regime} {DEVICE}: logits max|Δ| packed-separate {kernel:.3g}, separate-fp32 {precision:.3g}, "
        f"no boundaries {leak:.3g}; gradients rel packed-separate {grad_kernel:.3g}, separate-fp32 {grad_precision:.3g}"
    )
    assert kernel <= 2 * precision
    assert grad_kernel <= 2 * grad_precision
    assert leak > 10 * 2 * precision  # the bound would catch documents attending across their boundaries


def test_bf16_scoring_flips_few_pairwise_outcomes(tmp_path):
    """bf16 against float32 for the pairwise benchmarks (sWUGGY/sBLIMP/story-cloze style): 1,000 pairs of random
    unit sequences scored by a small random speech LM loaded both ways through `load_speech_lm`; the share of pairs
    whose outcome (positive scores higher) flips.

    Bound: a benchmark of n pairs reports an accuracy with a standard error of up to 1/(2√n), 1.6 % at n = 1,000.
    bf16 scoring must flip fewer pairs than that, so it cannot move a reported accuracy by more than the
    benchmark's own sampling noise."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from slam_recipes.evaluation.likelihood import PairBenchmark, frame, pair_outcomes, score_pairs
    from slam_recipes.modeling.unit_lm import load_speech_lm
    from slam_recipes.units import build_unit_tokenizer

    config = AutoConfig.for_model(
        "qwen2", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=502, max_position_embeddings=1024, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    build_unit_tokenizer(500).save_pretrained(tmp_path)
    rng = np.random.default_rng(0)
    pairs = 1000

    def samples():
        lengths = rng.integers(20, 120, pairs)  # units per sample, as spoken words to short sentences
        return frame(rng.integers(0, 500, lengths.sum()), np.concatenate([[0], np.cumsum(lengths)]))

    benchmark = PairBenchmark("random", "random units", samples(), samples())
    scores = {}
    for dtype in ("float32", "bfloat16"):
        model = load_speech_lm(str(tmp_path), 500, dtype=dtype, bf16_native_only=False, device=DEVICE)
        assert model.dtype == getattr(torch, dtype)
        scores[dtype] = score_pairs(model, benchmark)
    exact, bf16 = pair_outcomes(*scores["float32"]), pair_outcomes(*scores["bfloat16"])
    assert not np.array_equal(scores["float32"][0], scores["bfloat16"][0])  # bf16 really ran
    flipped = float((exact != bf16).mean())
    accuracy = f"accuracy {exact.mean():.3f} → {bf16.mean():.3f}"
    print(f"bf16 vs float32 on {DEVICE}: {flipped:.2%} of {pairs} pairs flipped ({accuracy})")
    assert flipped < 1 / (2 * np.sqrt(pairs))


def _speech_like(seconds: float, rng) -> np.ndarray:
    """A voiced sound with a gliding pitch, syllable-rate bursts and a little noise, at 16 kHz."""
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t + rng.uniform(0, 6)), 0, None)
    return (0.3 * envelope * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_bf16_hubert_features_change_few_units(tmp_path):
    """bf16 against float32 HuBERT features, as the units they give: a random-weight HuBERT (base size on CUDA, as
    mHuBERT-25Hz; a tiny one on the CPU, where bf16 is emulated), layer 11, k-means with 500 centroids fitted on
    5 minutes of float32 features; the share of frames whose unit changes when the features come from bf16.

    Bound: 1 %. A changed unit alters at most two tokens of a deduplicated stream, so ≤ 2 % token noise in the
    training data, while the tokeniser itself is far less stable than that under an inaudible change of the input:
    shifting the audio by one sample (62.5 µs) changes most units (measured here too; asserted ≥ 10× the bound, which
    also shows the measure registers changes)."""
    from transformers import HubertConfig, HubertModel

    from slam_recipes.audio.features import HubertFeatures
    from slam_recipes.audio.kmeans import NearestCentroid, fit_kmeans

    if ON_CUDA:
        config = HubertConfig()  # HuBERT base: 12 layers of 768, group-normalised convolutions, 50 frames/s
    else:
        config = HubertConfig(
            hidden_size=64, num_hidden_layers=12, num_attention_heads=4, intermediate_size=128, conv_dim=(32,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        )  # fmt: skip
    torch.manual_seed(0)
    HubertModel(config).save_pretrained(tmp_path)
    rng = np.random.default_rng(0)
    audio = [_speech_like(5.0, rng) for _ in range(60)]
    features = {}
    for dtype in ("bfloat16", "float32"):
        extractor = HubertFeatures(str(tmp_path), layer=11, device=DEVICE, dtype=dtype, bf16_native_only=False)
        assert extractor.model.dtype == getattr(torch, dtype)
        features[dtype] = torch.cat(extractor(audio))
    shifted = torch.cat(extractor([np.concatenate([w[1:], w[-1:]]) for w in audio]))  # float32, one sample earlier
    centroids = fit_kmeans(features["float32"], 500, steps=100, seed=0)
    assign = NearestCentroid(centroids, DEVICE)
    exact, bf16 = assign(features["float32"]), assign(features["bfloat16"])
    assert exact.unique().numel() > 450  # the frames spread over the units: no degenerate clustering
    changed = float((exact != bf16).float().mean())
    shift_changed = float((exact != assign(shifted)).float().mean())
    print(
        f"HuBERT bf16 vs float32 on {DEVICE}: {changed:.2%} of {exact.numel()} units changed "
        f"(a one-sample shift changes {shift_changed:.1%})"
    )
    assert changed < 0.01
    assert shift_changed > 10 * 0.01
