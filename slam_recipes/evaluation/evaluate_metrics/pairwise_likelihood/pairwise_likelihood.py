"""Pairwise likelihood (sWUGGY, sBLIMP, Spoken/Topic StoryCloze, SALMon) as a Hugging Face `evaluate` metric.

Load with `evaluate.load(slam_recipes.evaluation.evaluate_metrics.metric_path("pairwise_likelihood"))`. Pairs are validated
and framed by `slam_recipes.evaluation.evaluate_metrics.pair_benchmark` and scored by `evaluate_benchmark`, the code path of
`recipes/evaluate.py`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from slam_recipes.errors import ConfigError, DataError
from slam_recipes.evaluation.evaluate_metrics import SLAMMING_CITATION, pair_benchmark
from slam_recipes.evaluation.likelihood import aggregate, evaluate_benchmark, pair_outcomes
from slam_recipes.modeling.unit_lm import check_unit_vocab, load_speech_lm
from slam_recipes.units import DEFAULT_NUM_UNITS

CONFIGS = ("default", "log_likelihoods")
_LOADING_DEFAULTS = {"revision": None, "dtype": "auto", "attn_implementation": None, "device": None}

_DESCRIPTION = """
Pairwise likelihood is how speech language models are probed zero-shot on sWUGGY (a real word against a
pseudo-word), sBLIMP (a grammatical sentence against a minimally different ungrammatical one), Spoken and Topic
StoryCloze (a story with its true ending against one with a wrong ending) and SALMon (acoustically consistent or
aligned speech against a manipulated version). Each pair holds a positive and a negative sequence of discrete speech
units; the model is right on the pair when it finds the positive more likely.

Each sequence is framed as in pretraining, `<S> units <S>` (unit k is token id k + 2), and scored by the model's
log-likelihood of every token after the first, averaged per token (`mean_nll=True`, the default, as in slamkit) or
summed. A pair counts 1 when the positive scores higher, 0.5 on a tie and 0 otherwise; the metric is the mean over
pairs, x100, the scale of the Slamming paper's Table 2.

The mean is taken over pairs. The official ZeroSpeech 2021 numbers for sWUGGY and sBLIMP first average the pairs of
each item (its voices) and then the items; that grouped score comes from `recipes/evaluate.py` on a pair dataset
with an `id` column. For StoryCloze and SALMon, which have one pair per item, both agree.

The `log_likelihoods` configuration scores pairs whose log-likelihoods were computed elsewhere (no model): its
`positive` and `negative` inputs are numbers rather than unit sequences.
"""

_KWARGS_DESCRIPTION = """
Args:
    positive (`list` of `list` of `int`): the positive sample of each pair, as unit ids in [0, num_units) (not token
        ids). With the `log_likelihoods` configuration: one log-likelihood (`float`) per pair.
    negative (`list` of `list` of `int`): the negative sample of each pair, in the same form as `positive`.
    model_id (`str`): a speech LM folder or Hub id, loaded with `slam_recipes.modeling.unit_lm.load_speech_lm`. Give either
        `model_id` or `model`.
    model (`transformers.PreTrainedModel`): a speech LM already loaded (used as it is, on its own device); load it
        once this way to score several benchmarks.
    num_units (`int`, defaults to 500): size of the unit vocabulary; the model's vocabulary must be num_units + 2.
    mean_nll (`bool`, defaults to `True`): score by the mean log-likelihood per token; `False` sums it.
    max_tokens_per_batch (`int`, defaults to 16384): padded tokens per forward pass (rows x longest row).
    device (`str`, *optional*): where `model_id` is loaded; defaults to CUDA when available, else CPU.
    dtype (`str`, defaults to `"auto"`): dtype `model_id` is loaded in; "auto" is bfloat16 on a GPU, float32 on CPU.
    revision (`str`, *optional*): Hub revision of `model_id`.
    attn_implementation (`str`, *optional*): attention implementation `model_id` is loaded with.

Returns:
    score (`float`): share of pairs where the positive is more likely (ties count half), x100.
    num_pairs (`int`): number of pairs scored.
    num_groups (`int`): equal to num_pairs (every pair is its own group).
    aggregation (`str`): how the score was averaged ("mean over pairs").
    likelihood (`str`): "mean" or "sum" (not with `log_likelihoods`).
    seconds (`float`), pairs_per_second (`float`): scoring time (not with `log_likelihoods`).

Raises:
    slam_recipes.errors.DataError: an empty unit sequence, or a unit id outside [0, num_units); the one-line
        message names the side and the row. With `log_likelihoods`: a missing or NaN value.
    slam_recipes.errors.ConfigError: neither or both of `model_id` and `model`, or a model whose vocabulary is not
        num_units + 2.

Example:
    >>> import evaluate
    >>> from slam_recipes.evaluation.evaluate_metrics import metric_path
    >>> metric = evaluate.load(metric_path("pairwise_likelihood"))
    >>> result = metric.compute(
    ...     positive=[[12, 7, 7, 301], [5, 88, 14]],
    ...     negative=[[12, 7, 9, 301], [5, 88, 15]],
    ...     model_id="slprl/slam_scaled",
    ... )
    >>> sorted(result)[:3], result["num_pairs"]
    (['aggregation', 'likelihood', 'num_groups'], 2)
    >>> precomputed = evaluate.load(metric_path("pairwise_likelihood"), "log_likelihoods")
    >>> precomputed.compute(positive=[-2.1, -3.0], negative=[-2.5, -3.0])["score"]
    75.0
"""

_CITATION = (
    SLAMMING_CITATION
    + """
@misc{nguyen2020zerospeech,
  title={The Zero Resource Speech Benchmark 2021: Metrics and baselines for unsupervised spoken language modeling},
  author={Nguyen, Tu Anh and de Seyssel, Maureen and Roz{\\'e}, Patricia and Rivi{\\`e}re, Morgane and
          Kharitonov, Evgeny and Baevski, Alexei and Dunbar, Ewan and Dupoux, Emmanuel},
  year={2020},
  eprint={2011.11588},
  archivePrefix={arXiv},
  primaryClass={cs.CL}
}
"""
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PairwiseLikelihood(evaluate.Metric):
    """Share of pairs (x100) where a speech LM finds the positive unit sequence more likely than the negative."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in CONFIGS:
            raise ConfigError(
                f"pairwise_likelihood: unknown configuration {self.config_name!r}; choose from {CONFIGS}"
            )
        value = datasets.Value("float64") if self.config_name == "log_likelihoods" else datasets.Value("int64")
        column = value if self.config_name == "log_likelihoods" else datasets.List(value)
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"positive": column, "negative": column}),
            reference_urls=["https://arxiv.org/abs/2502.15814", "https://arxiv.org/abs/2011.11588"],
        )

    def _compute(
        self,
        positive: list,
        negative: list,
        model_id: str | None = None,
        model=None,
        num_units: int = DEFAULT_NUM_UNITS,
        mean_nll: bool = True,
        max_tokens_per_batch: int = 16384,
        device: str | None = None,
        dtype: str = "auto",
        revision: str | None = None,
        attn_implementation: str | None = None,
    ) -> dict:
        given = {"device": device, "dtype": dtype, "revision": revision, "attn_implementation": attn_implementation}
        loading = {k: v for k, v in given.items() if v != _LOADING_DEFAULTS[k]}
        if self.config_name == "log_likelihoods":
            if model_id is not None or model is not None or loading:
                raise ConfigError("pairwise_likelihood: the log_likelihoods configuration takes scores, not a model")
            return score_log_likelihoods(positive, negative)
        if (model_id is None) == (model is None):
            raise ConfigError("pairwise_likelihood: give either model_id (a speech LM folder or Hub id) or model")
        if model is not None and loading:
            raise ConfigError(
                f"pairwise_likelihood: {sorted(loading)} apply to loading model_id, not to a model passed in"
            )
        benchmark = pair_benchmark(positive, negative, num_units)  # validated before any model time is spent
        if model is None:
            model = load_speech_lm(model_id, num_units, **given)
        else:
            check_unit_vocab(model.config, num_units, "the model")
        result = evaluate_benchmark(model, benchmark, mean_nll=mean_nll, max_tokens_per_batch=max_tokens_per_batch)
        result.pop("source", None)
        return result


def score_log_likelihoods(positive: list, negative: list) -> dict:
    """Pair outcomes and their mean (x100) from given log-likelihoods; a missing or NaN value is a `DataError`."""
    if not positive:
        raise DataError("pairwise_likelihood: no pairs")
    scores = {}
    for column, values in (("positive", positive), ("negative", negative)):
        array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        if np.isnan(array).any():
            row = int(np.flatnonzero(np.isnan(array))[0])
            raise DataError(f"pairwise_likelihood {column} row {row}: log-likelihood is missing or NaN")
        scores[column] = array
    return aggregate(pair_outcomes(scores["positive"], scores["negative"]))
