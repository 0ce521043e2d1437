"""The throughput pieces: the Slam architecture shipped for the benchmark, the synthetic data, the `sdpa_varlen`
attention, static-shape batches, the trainer's throughput logs, and a short real run of the benchmark."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIGS, write_config

from bench import throughput
from slam_recipes.data.packing import build_collator, check_packing, flattens_batches, padding_free_is_exact
from slam_recipes.modeling.unit_lm import build_unit_lm, count_parameters, model_flops_per_token

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_slam_architecture_matches_the_paper():
    """Random init of the shipped Qwen2.5-0.5B config with the unit vocabulary: the paper's parameter count (Table 6)
    and the issue's 2.414 GFLOP per token at context 1024, against torch's FLOP counter on a training step (see
    tests/test_model.py for the term-by-term account)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(throughput.SLAM_ARCHITECTURE)
    config.vocab_size = 502
    with torch.device("meta"):  # the counter needs shapes only
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        ids = torch.zeros(1, 1024, dtype=torch.long)
    assert count_parameters(model) == 358_347_904
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    # The counter sees the matmuls (the head included, through the tied embedding the formula counts once); the
    # formula's 6N also counts the norm weights and q/k/v biases, which no matmul uses: 6 FLOPs each.
    norms_and_biases = 24 * (2 * 896 + 896 + 2 * 128) + 896
    counted = counter.get_total_flops() / 1024
    assert model_flops_per_token(model, 1024) == counted + 6 * norms_and_biases == 2_414_328_576


def test_synthetic_lengths_realistic_and_reproducible(tmp_path):
    lengths = throughput.synthetic_lengths(20_000, 1024)
    assert abs(lengths.mean() - throughput.MEAN_UNITS) < 3
    assert lengths.min() >= 1 and lengths.max() == 1022  # <S> units <S> fits the context
    assert 0.02 < (lengths == 1022).mean() < 0.2  # a tail of context-filling utterances, as chunked long audio gives
    np.testing.assert_array_equal(lengths, throughput.synthetic_lengths(20_000, 1024))
    info = throughput.write_synthetic_parquet(str(tmp_path / "u.parquet"), 500, 256, mean=150)
    assert info["documents"] == 500 and info["max_units"] <= 254 and abs(info["mean_units"] - 150) < 10


@pytest.fixture(scope="module")
def twin_models(tmp_path_factory):
    """The same weights with sdpa and with sdpa_varlen."""
    folder = write_config(tmp_path_factory.mktemp("tiny"), TINY_CONFIGS["qwen2"])
    torch.manual_seed(0)
    varlen = build_unit_lm(folder, twist_init=False, attn_implementation="sdpa_varlen")
    reference = build_unit_lm(folder, twist_init=False, attn_implementation="sdpa")
    reference.load_state_dict(varlen.state_dict())
    return varlen.eval(), reference.eval()


def _flat_batch(docs):
    examples = [{"input_ids": [t for d in docs for t in d], "seq_lengths": [len(d) for d in docs]}]
    return build_collator("padding_free", "sdpa_varlen")(examples)


def test_sdpa_varlen_flat_batch_equals_separate_documents(twin_models):
    """Logits and gradients of a flat padding-free batch equal those of each document alone (one-token pieces, such
    as the tail of a chunked utterance, included)."""
    varlen, reference = twin_models
    assert flattens_batches("sdpa_varlen") and padding_free_is_exact(varlen, "sdpa_varlen")
    docs = [[1, 5, 9, 33, 1], [1, 70, 71, 1], [402], [1, 400, 401, 402, 403, 1]]
    batch = _flat_batch(docs)
    assert batch["cu_seq_lens_q"].tolist() == [0, 5, 9, 10, 16]
    labels = batch.pop("labels")
    packed = varlen(**batch, labels=labels)
    separate = [reference(input_ids=torch.tensor([d])).logits[0] for d in docs]
    torch.testing.assert_close(packed.logits[0], torch.cat(separate), atol=1e-5, rtol=1e-5)
    # the gradient of the packed loss equals the gradient of the same per-token losses taken document by document
    packed.loss.backward()
    grad = varlen.model.layers[0].self_attn.q_proj.weight.grad.clone()
    varlen.zero_grad()
    targets = [torch.tensor(d[1:], dtype=torch.long) for d in docs]
    logits = [reference(input_ids=torch.tensor([d])).logits[0, :-1] for d in docs]
    loss = torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(targets), reduction="sum")
    (loss / sum(len(t) for t in targets)).backward()
    torch.testing.assert_close(grad, reference.model.layers[0].self_attn.q_proj.weight.grad, atol=1e-6, rtol=1e-4)
    reference.zero_grad()


def test_sdpa_varlen_padded_batches_and_generation(twin_models):
    """Without document boundaries it is ordinary causal attention with the padding mask: evaluation batches and
    KV-cache generation match sdpa."""
    varlen, reference = twin_models
    input_ids = torch.randint(2, 502, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(input_ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        ours = varlen(input_ids=input_ids, attention_mask=mask).logits
        theirs = reference(input_ids=input_ids, attention_mask=mask).logits
        torch.testing.assert_close(ours[mask.bool()], theirs[mask.bool()], atol=1e-5, rtol=1e-5)
        generated = varlen.generate(input_ids[:1], max_new_tokens=6, do_sample=False)
        assert torch.equal(generated, reference.generate(input_ids[:1], max_new_tokens=6, do_sample=False))


def test_sdpa_varlen_left_padded_decoding_equals_sdpa_and_one_at_a_time(twin_models):
    """Left-padded prompts of different lengths: the prefill, every cached one-token decode step (where the query
    is one token and the padding mask must still hide the pad keys) and greedy continuations equal sdpa's and those
    of each prompt alone, unpadded (issue 20, part 1)."""
    from transformers import GenerationConfig

    from slam_recipes.evaluation.generation import generate_continuations

    varlen, reference = twin_models
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, 500, size) for size in (2, 9, 5, 7)]
    ids = [[1, *(p + 2).tolist()] for p in prompts]
    width = max(map(len, ids))
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, seq in enumerate(ids):
        input_ids[row, width - len(seq) :], mask[row, width - len(seq) :] = torch.tensor(seq), 1
    nxt = torch.tensor([[7], [8], [9], [10]])
    with torch.no_grad():
        steps = {}
        for name, model in (("varlen", varlen), ("sdpa", reference)):
            prefill = model(input_ids=input_ids, attention_mask=mask, use_cache=True)
            step_mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            step = model(input_ids=nxt, attention_mask=step_mask, past_key_values=prefill.past_key_values)
            steps[name] = (prefill.logits[:, -1], step.logits[:, -1])
        for row, seq in enumerate(ids):  # a second path: each prompt alone, no padding at all
            alone = reference(input_ids=torch.tensor([seq + [int(nxt[row])]])).logits[0]
            for ours in (steps["varlen"], steps["sdpa"]):
                torch.testing.assert_close(ours[0][row], alone[-2], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(ours[1][row], alone[-1], atol=1e-5, rtol=1e-5)
    config = GenerationConfig(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    batched = generate_continuations(varlen, prompts, config, batch_size=4)
    assert batched == generate_continuations(reference, prompts, config, batch_size=4)
    assert batched == generate_continuations(varlen, prompts, config, batch_size=1)
    assert sum(len(r["units"]) for r in batched) > len(prompts)  # the comparison covers several decode steps


def test_check_packing_probes_the_models_own_kernel(tmp_path):
    """OPT built with sdpa is refused even when the collator makes the flat `cu_seq_lens` row (its sdpa mask ignores
    the boundaries); built with sdpa_varlen, the same architecture is exact and accepted (issue 20, part 5)."""
    from slam_recipes.errors import DataError

    config = write_config(tmp_path, TINY_CONFIGS["opt"])
    opt = build_unit_lm(config, twist_init=False, attn_implementation="sdpa")
    with pytest.raises(DataError, match=r"padding_free is not exact .* attention crosses documents \(its sdpa mask"):
        check_packing(opt, "padding_free", "sdpa_varlen")
    check_packing(
        build_unit_lm(config, twist_init=False, attn_implementation="sdpa_varlen"), "padding_free", "sdpa_varlen"
    )


def test_static_shapes_pad_every_batch_to_the_context():
    examples = [
        {"input_ids": [1, 5, 6, 1, 1, 7, 1], "seq_lengths": [4, 3]},
        {"input_ids": [1, 8, 1], "seq_lengths": [3]},
    ]
    rows = build_collator("padding_free", "sdpa", pad_to_multiple_of=16)(examples)
    assert rows["input_ids"].shape == (2, 16)
    assert (rows["labels"][:, 7:] == -100).all() and (rows["input_ids"][1, 3:] == 0).all()
    flat = build_collator("padding_free", "sdpa_varlen", pad_to_multiple_of=16)(examples)
    assert flat["input_ids"].shape == (1, 32) and flat["cu_seq_lens_q"][-1] == 32  # 2 rows × 16
    assert (flat["labels"][0, 10:] == -100).all()


def test_string_tokenizer_baseline_gives_the_unit_path_ids(tmp_path):
    """The benchmark's slamkit-style baseline (WordLevel over `<Un..>` strings) and the unit path agree."""
    from datasets import Dataset

    from slam_recipes.data.sources import to_token_ids
    from slam_recipes.units import units_to_string

    units = [[3, 4, 5], [499], [0, 0, 17, 250]]
    strings = Dataset.from_dict({"audio_repr": [units_to_string(u) for u in units]})
    baseline = throughput.string_tokenizer_ids(strings, 500)["input_ids"]
    ours = to_token_ids(Dataset.from_dict({"units": units}), "x", num_units=500)["input_ids"]
    assert baseline == ours == [[1, 5, 6, 7, 1], [1, 501, 1], [1, 2, 2, 19, 252, 1]]


def test_benchmark_runs_the_recipe_and_reports_each_variant(tmp_path, monkeypatch):
    """Two variants through the real pretraining script: padded batches and padding-free with sdpa_varlen, then
    fused AdamW on top of the better one. The logged figures are the trainer's own."""
    chosen = ("padded batches (HF default collator)", "padding-free, sdpa_varlen", "+ fused AdamW")
    every = throughput.variants
    monkeypatch.setattr(throughput, "variants", lambda *a: [v for v in every(*a) if v.name in chosen])
    recipe = tmp_path / "recipe.yaml"
    with open(os.path.join(REPO, "recipes", "slam", "pretrain.yaml")) as f:
        recipe.write_text(f.read().replace("context_length: 1024", "context_length: 256"))
    setup = throughput.Setup(
        recipe=str(recipe),
        model=throughput.TINY_ARCHITECTURE,
        batch_size=2,
        accumulation=1,
        steps=6,
        log_every=2,
        overrides={"use_cpu": True, "dataloader_num_workers": 0, "dataloader_pin_memory": False},
        peak_tflops=1.0,
        peak_source="test",
        mean_units=150,
    )
    result = throughput.run_throughput(setup, str(tmp_path / "out"), cuda=False, log=lambda message: None)
    with open(tmp_path / "out" / "throughput.json") as f:
        assert json.load(f) == result
    by_name = {v["name"]: v for v in result["variants"]}
    assert set(by_name) == set(chosen)
    padded, varlen = by_name[chosen[0]], by_name[chosen[1]]
    for variant in (padded, varlen, by_name[chosen[2]]):
        assert "error" not in variant, variant.get("error")
        assert variant["intervals"] == 2 and variant["tokens_per_s"] > 0
        assert 0 <= variant["data_wait_fraction"] < 1 and variant["peak_memory_gib"] > 0
        assert variant["mfu"] > 0  # against the given 1 TFLOP/s
    assert padded["real_token_fraction"] < 0.95  # mean 620-unit-like utterances padded to the longest in the batch
    assert varlen["real_token_fraction"] == 1.0  # one flat row, no padding
    assert varlen["kept"] is True and result["best"] in chosen[1:]
    assert padded["vs_padded"] == 1.0
    table = throughput.markdown_table(result)
    assert all(f"| {name} |" in table for name in chosen)


def test_sdpa_varlen_windows_come_in_few_lengths(monkeypatch):
    """PyTorch's bf16 CPU attention keeps memory per sequence length, so the per-document windows are rounded up to
    multiples of 64 tokens (and stay exact, see above): 40 documents of 40 different lengths make 3 window lengths."""
    from slam_recipes.modeling import attention

    lengths = list(range(50, 170, 3))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    seen = []
    real = attention.F.scaled_dot_product_attention

    def recording(q, *args, **kwargs):
        seen.append(q.shape[2])
        return real(q, *args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", recording)
    q = torch.randn(1, 4, int(starts[-1]), 8)
    kv = torch.randn(1, 2, int(starts[-1]), 8)
    spans = [list(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True))]
    out = attention._per_document(q, kv, kv, spans, None, True)
    assert out.shape == q.shape and len(seen) == len(lengths)
    assert sorted(set(seen)) == [64, 128, 192]


def test_the_preparation_section_checks_every_input_form_against_the_string_path(tmp_path, monkeypatch):
    """bench/sections.py's preparation section on 60 synthetic utterances: the three input forms and the slamkit-style
    string tokeniser give the same number of tokens (the section itself compares their ids and raises on a
    difference), and padding-free packing puts several utterances in a row."""
    import datasets

    from bench.sections import STRING_BASELINE, bench_preparation

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))  # the section repoints it
    result = bench_preparation(num_utterances=60, context_length=4096, repeats=1)
    tokens = {row["input"]: row["tokens"] for row in result["rows"]}
    assert set(tokens) == {
        STRING_BASELINE,
        *(f"{form} → unit path" for form in ("units jsonl", "audio_repr jsonl", "parquet")),
    }
    assert len(set(tokens.values())) == 1 and result["checked_rows"] == 60
    assert 0 < result["packing"]["rows"] < 60  # whole utterances side by side: fewer rows than utterances
