"""The `evaluate` metric modules shipped in the package: loaded from disk offline, same numbers as the package code."""

import configparser
import fnmatch
import math
import os
import socket
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, write_jsonl

from slam_recipes.errors import ConfigError, DataError
from slam_recipes.evaluation.evaluate_metrics import METRICS, load_metric, metric_path, pair_benchmark
from slam_recipes.evaluation.likelihood import evaluate_benchmark, load_pair_benchmark
from slam_recipes.modeling.unit_lm import load_speech_lm


@pytest.fixture(scope="module")
def evaluate_cache(tmp_path_factory):
    """evaluate's module copies and prediction files in a temporary folder, never ~/.cache; undone afterwards."""
    import evaluate

    root = tmp_path_factory.mktemp("evaluate-cache")
    saved = evaluate.config.HF_MODULES_CACHE, evaluate.config.HF_METRICS_CACHE
    evaluate.config.HF_MODULES_CACHE, evaluate.config.HF_METRICS_CACHE = root / "modules", root / "metrics"
    yield root
    evaluate.config.HF_MODULES_CACHE, evaluate.config.HF_METRICS_CACHE = saved
    for name in [m for m in sys.modules if m == "evaluate_modules" or m.startswith("evaluate_modules.")]:
        del sys.modules[name]
    if str(root / "modules") in sys.path:
        sys.path.remove(str(root / "modules"))


@pytest.fixture(scope="module")
def load(evaluate_cache):
    import evaluate

    def _load(name: str, config_name: str | None = None):
        # In memory: no prediction files, so no file lock is left behind by a compute that raises.
        return evaluate.load(
            metric_path(name), config_name, cache_dir=str(evaluate_cache / "metrics"), keep_in_memory=True
        )

    return _load


def random_pairs(seed: int, n: int, num_units: int = 500) -> tuple[list[list[int]], list[list[int]]]:
    rng = np.random.default_rng(seed)
    positive = [rng.integers(0, num_units, int(rng.integers(2, 30))).tolist() for _ in range(n)]
    negative = [rng.integers(0, num_units, int(rng.integers(2, 30))).tolist() for _ in range(n)]
    negative[0] = list(positive[0])  # a tie: counts 0.5
    return positive, negative


def log_likelihood(model, units: list[int], mean: bool = True) -> float:
    """Independent per-sample computation: log p(token | prefix) over `<S> units+2 <S>` after the first token,
    averaged (`mean`) or summed; one unpadded sequence, float64 log-softmax."""
    ids = torch.tensor([[1] + [u + 2 for u in units] + [1]])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
    token = log_probs[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    return float(token.mean() if mean else token.sum())


def expected_score(model, positive, negative, mean: bool = True) -> tuple[float, list[float]]:
    """(100 × mean pair outcome, each pair's positive − negative score) from `log_likelihood`: 1 when the positive
    is more likely, 0.5 when both samples are the same sequence, else 0."""
    margins = [
        log_likelihood(model, p, mean) - log_likelihood(model, n, mean)
        for p, n in zip(positive, negative, strict=True)
    ]
    outcomes = [0.5 if p == n else float(m > 0) for p, n, m in zip(positive, negative, margins, strict=True)]
    return 100 * sum(outcomes) / len(outcomes), margins


# -- loading ----------------------------------------------------------------------------------------------------------
def test_metric_paths_are_loadable_folders():
    for name in METRICS:
        assert os.path.isabs(metric_path(name))
        assert os.path.isfile(os.path.join(metric_path(name), f"{name}.py"))
        assert not os.path.exists(os.path.join(metric_path(name), "__init__.py"))  # data, not a package
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        metric_path("bleu")


def test_metric_scripts_are_package_data():
    """setup.cfg ships every metric script with the wheel (the folders are not packages, so only package_data does)."""
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    patterns = config["options.package_data"]["slam_recipes.evaluation.evaluate_metrics"].split()
    for name in METRICS:
        assert any(fnmatch.fnmatch(f"{name}/{name}.py", p) for p in patterns)


def test_loads_offline_without_network(evaluate_cache, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("evaluate.load of a local metric opened a network connection")

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setattr(socket.socket, "connect", no_network)
    metric = load_metric("auto_bleu", cache_dir=str(evaluate_cache / "metrics"))
    assert metric.name == "auto_bleu" and metric.keep_in_memory
    assert sys.modules[type(metric).__module__].__file__.startswith(str(evaluate_cache))  # the cached copy
    assert metric.compute(predictions=["a b a b a"])["auto_bleu"] == 100.0


# -- auto-BLEU --------------------------------------------------------------------------------------------------------
TEXTS = ["the cat saw the cat", "a dog ran", "Go, go, go home!", "one", "It is what it is. It is."]
# Hand-counted, words from NLTK's tokenizer (the paper's): repeated n-gram positions / n-gram positions.
#   "Go, go, go home!"          → Go , go , go home !           bigrams: (, go) ×2 of 6    unigrams: , ×2 go ×2 of 7
#   "It is what it is. It is."  → It is what it is. It is .     bigrams: (It is) ×2 of 7  unigrams: It ×2 is ×2 of 8
NLTK_BIGRAM = [2 / 4, 0.0, 2 / 6, 0.0, 2 / 7]
NLTK_UNIGRAM = [4 / 5, 0.0, 4 / 7, 0.0, 4 / 8]
# Lower-cased, no punctuation: "go go go home" → (go go) ×2 of 3; "it is what it is it is" → (it is) ×3 of 6.
NORMALIZED_BIGRAM = [2 / 4, 0.0, 2 / 3, 0.0, 3 / 6]


def test_auto_bleu_known_values(load):
    metric = load("auto_bleu")
    assert metric.compute(predictions=["the cat saw the cat"]) == {
        "auto_bleu": 50.0,
        "auto_bleu_n": 2,
        "auto_bleu_tokenizer": "nltk",
    }
    result = metric.compute(predictions=TEXTS, n=2, return_per_text=True)
    assert result["auto_bleu_per_text"] == pytest.approx([100 * x for x in NLTK_BIGRAM])
    assert result["auto_bleu"] == pytest.approx(100 * sum(NLTK_BIGRAM) / 5)
    unigram = metric.compute(predictions=TEXTS, n=1)
    assert unigram["auto_bleu_n"] == 1
    assert unigram["auto_bleu"] == pytest.approx(100 * sum(NLTK_UNIGRAM) / 5)
    normalized = metric.compute(predictions=TEXTS, tokenizer="normalized", return_per_text=True)
    assert normalized["auto_bleu_tokenizer"] == "normalized"
    assert normalized["auto_bleu_per_text"] == pytest.approx([100 * x for x in NORMALIZED_BIGRAM])
    assert math.isnan(metric.compute(predictions=[])["auto_bleu"])


def test_auto_bleu_bad_options(load):
    metric = load("auto_bleu")
    with pytest.raises(
        ConfigError, match="auto_bleu_tokenizer must be one of \\('nltk', 'normalized'\\), got 'moses'"
    ):
        metric.compute(predictions=["a b"], tokenizer="moses")
    with pytest.raises(ConfigError, match="auto_bleu_n must be at least 1, got 0"):
        metric.compute(predictions=[], n=0)


# -- pairwise likelihood ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mean_nll", [True, False])
def test_pairwise_matches_a_per_sample_forward(load, tiny_unit_lm_dir, tmp_path, mean_nll):
    """24 random pairs (one a tie) scored in padded batches equal the same pairs scored one unpadded sample at a
    time; the pairs loaded from a file score the same."""
    positive, negative = random_pairs(0, 24)
    metric = load("pairwise_likelihood")
    kwargs = {"mean_nll": mean_nll, "max_tokens_per_batch": 200}
    result = metric.compute(positive=positive, negative=negative, model_id=tiny_unit_lm_dir, device="cpu", **kwargs)

    model = load_speech_lm(tiny_unit_lm_dir, 500, device="cpu")
    expected, margins = expected_score(model, positive, negative, mean=mean_nll)
    assert min(abs(m) for m in margins[1:]) > 1e-4  # no near-tie that float32 batching could flip
    assert expected != 50.0  # a sign error (100 − score) shows
    assert result["score"] == pytest.approx(expected)
    assert result["num_pairs"] == 24 and result["likelihood"] == ("mean" if mean_nll else "sum")
    rows = [{"positive": p, "negative": n} for p, n in zip(positive, negative, strict=True)]
    from_file = load_pair_benchmark("pairs", write_jsonl(tmp_path / "pairs.jsonl", rows), 500)
    assert evaluate_benchmark(model, from_file, **kwargs)["score"] == pytest.approx(expected)
    # A model object already loaded gives the same score.
    assert metric.compute(positive=positive, negative=negative, model=model, **kwargs)["score"] == result["score"]


def test_pairwise_hand_checked(load, tiny_unit_lm_dir):
    """Four pairs scored one sample at a time: (a, b), (d, c), (c, e) and a tie (e, e). The pairs are chosen so the
    outcome depends on the model and on the likelihood: under this model a long d beats a short c per token but not
    summed."""
    a, b, c = [3, 17, 17, 250], [3, 18, 499, 250, 0], [42, 7]
    d, e = [42, 8, 9, 100, 101, 102, 7], [5, 6]
    positive, negative = [a, d, c, e], [b, c, e, e]
    model = load_speech_lm(tiny_unit_lm_dir, 500, device="cpu")
    metric = load("pairwise_likelihood")
    expected = {}
    for mean in (True, False):
        expected[mean], margins = expected_score(model, positive, negative, mean=mean)
        assert min(abs(m) for m in margins[:3]) > 1e-3
        assert expected[mean] != 50.0  # a sign error (100 − score) shows
        result = metric.compute(positive=positive, negative=negative, model=model, mean_nll=mean)
        assert result["score"] == pytest.approx(expected[mean]) and result["num_pairs"] == 4
    assert expected[True] != expected[False]  # mean and summed likelihoods rank (d, c) differently


@pytest.mark.parametrize(
    ("positive", "negative", "message"),
    [
        ([[1, 2], [3]], [[4, 5], [500]], r"pairwise_likelihood negative row 1: unit id 500 outside \[0, 500\)"),
        ([[1, 2], [-1]], [[4, 5], [6]], r"pairwise_likelihood positive row 1: unit id -1 outside \[0, 500\)"),
        ([[1, 2], []], [[4, 5], [6]], "pairwise_likelihood positive row 1: empty unit sequence"),
        ([[1, 2], [3]], [None, [6]], r"pairwise_likelihood negative row 0: empty unit sequence \(null\)"),
    ],
)
def test_pairwise_bad_units_are_one_line_data_errors(load, tiny_unit_lm_dir, positive, negative, message):
    with pytest.raises(DataError, match=message) as err:
        load("pairwise_likelihood").compute(positive=positive, negative=negative, model_id=tiny_unit_lm_dir)
    assert "\n" not in str(err.value)


def test_pair_benchmark_helper_validates_like_the_loader():
    with pytest.raises(DataError, match=r"x positive row 0: unit id 100 outside \[0, 100\)"):
        pair_benchmark([[100]], [[1]], 100, name="x")
    with pytest.raises(DataError, match="1 positives but 2 negatives"):
        pair_benchmark([[1]], [[1], [2]], 100)
    with pytest.raises(DataError, match="no pairs"):
        pair_benchmark([], [], 100)
    benchmark = pair_benchmark([[0, 5]], [np.array([7])], 100)
    assert benchmark.positive[0].tolist() == [1, 2, 7, 1] and benchmark.negative[0].tolist() == [1, 9, 1]


def test_pairwise_model_arguments(load, tiny_unit_lm_dir):
    metric = load("pairwise_likelihood")
    pairs = {"positive": [[1, 2]], "negative": [[2, 1]]}
    with pytest.raises(ConfigError, match="give either model_id"):
        metric.compute(**pairs)
    model = load_speech_lm(tiny_unit_lm_dir, 500, device="cpu")
    with pytest.raises(ConfigError, match="give either model_id"):
        metric.compute(**pairs, model=model, model_id=tiny_unit_lm_dir)
    with pytest.raises(ConfigError, match=r"\['device'\] apply to loading model_id"):
        metric.compute(**pairs, model=model, device="cpu")
    with pytest.raises(ConfigError, match="vocabulary mismatch"):
        metric.compute(**pairs, model=model, num_units=100)
    with pytest.raises(ConfigError, match="vocabulary mismatch"):
        metric.compute(**pairs, model_id=tiny_unit_lm_dir, num_units=100)


def test_pairwise_precomputed_log_likelihoods(load):
    metric = load("pairwise_likelihood", "log_likelihoods")
    result = metric.compute(positive=[-2.1, -3.0, -1.0, -4.0], negative=[-2.5, -3.0, -0.5, -4.5])
    assert result["score"] == 62.5 and result["num_pairs"] == 4
    with pytest.raises(DataError, match="negative row 1: log-likelihood is missing or NaN"):
        metric.compute(positive=[-1.0, -2.0], negative=[-1.0, float("nan")])
    with pytest.raises(ConfigError, match="takes scores, not a model"):
        metric.compute(positive=[-1.0], negative=[-2.0], model_id="anything")
    with pytest.raises(ConfigError, match="unknown configuration 'scores'"):
        load("pairwise_likelihood", "scores")
