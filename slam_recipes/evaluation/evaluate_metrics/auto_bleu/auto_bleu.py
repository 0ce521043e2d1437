"""auto-BLEU as a Hugging Face `evaluate` metric: how much each text repeats its own word n-grams.

Load with `evaluate.load(slam_recipes.evaluation.evaluate_metrics.metric_path("auto_bleu"))`; the score comes from
`slam_recipes.evaluation.metrics.auto_bleu`, the function the generative evaluation and the DPO repetition filter use.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from slam_recipes.configs import check_auto_bleu
from slam_recipes.evaluation.evaluate_metrics import SLAMMING_CITATION
from slam_recipes.evaluation.metrics import auto_bleu

_DESCRIPTION = """
auto-BLEU measures repetition inside a generated text, following the generative spoken language modelling
evaluation of Lakhotia et al. (2021) as the Slamming paper's code (slamkit `calc_auto_bleu`) computes it. Each text
is split into words, the words are cut into overlapping n-grams, and the text scores the share of its n-gram
positions whose n-gram also occurs at another position: 0 means no n-gram repeats, 1 means every n-gram does. A text
with fewer than n words scores 0.

Words come from NLTK's word tokenizer (`nltk.tokenize.NLTKWordTokenizer`, Treebank-style), as in slamkit: case is
kept and punctuation marks are words of their own, so "The dog ran. the dog sat." scores 0 (no bigram repeats). The
`normalized` tokenizer lower-cases and keeps only runs of letters, digits and apostrophes; the same text then scores
0.4 ("the dog" twice of five bigrams).

The metric averages the per-text values over all texts and reports the mean times 100, the scale of the Slamming
paper's generation table and of this package's generative evaluation (`auto_bleu` in generative_eval.json).
Lower is better: a speech LM stuck in a loop produces transcripts with a high auto-BLEU.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the texts to score, e.g. ASR transcripts of generated speech continuations.
    n (`int`, defaults to 2): the n-gram order (bigrams, as in the paper).
    tokenizer (`str`, defaults to `"nltk"`): how words are split: `"nltk"` (the paper's) or `"normalized"`
        (lower-cased, punctuation dropped).
    return_per_text (`bool`, defaults to `False`): also return each text's auto-BLEU (x100).

Returns:
    auto_bleu (`float`): mean auto-BLEU over the texts, x100 (NaN when there are no texts). Lower is better.
    auto_bleu_n (`int`): the n-gram order used.
    auto_bleu_tokenizer (`str`): the word tokenizer used.
    auto_bleu_per_text (`list` of `float`): each text's auto-BLEU, x100, in input order (only with
        `return_per_text=True`).

Raises:
    slam_recipes.errors.ConfigError: n below 1, or an unknown `tokenizer`.

Example:
    >>> import evaluate
    >>> from slam_recipes.evaluation.evaluate_metrics import metric_path
    >>> metric = evaluate.load(metric_path("auto_bleu"))
    >>> result = metric.compute(predictions=["the cat saw the cat", "a dog ran"], return_per_text=True)
    >>> result["auto_bleu"], result["auto_bleu_per_text"]
    (25.0, [50.0, 0.0])
    >>> metric.compute(predictions=["The dog ran. the dog sat."], tokenizer="normalized")["auto_bleu"]
    40.0
"""

_CITATION = (
    """
@article{lakhotia2021generative,
  title={On Generative Spoken Language Modeling from Raw Audio},
  author={Lakhotia, Kushal and Kharitonov, Eugene and Hsu, Wei-Ning and Adi, Yossi and Polyak, Adam and
          Bolte, Benjamin and Nguyen, Tu-Anh and Copet, Jade and Baevski, Alexei and Mohamed, Abdelrahman and
          Dupoux, Emmanuel},
  journal={Transactions of the Association for Computational Linguistics},
  volume={9},
  pages={1336--1354},
  year={2021},
  doi={10.1162/tacl_a_00430}
}
"""
    + SLAMMING_CITATION
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AutoBleu(evaluate.Metric):
    """Mean auto-BLEU (x100) of a list of texts."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://aclanthology.org/2021.tacl-1.79", "https://arxiv.org/abs/2502.15814"],
        )

    def _compute(
        self, predictions: list[str], n: int = 2, tokenizer: str = "nltk", return_per_text: bool = False
    ) -> dict:
        check_auto_bleu(n, tokenizer)  # also when there are no predictions
        per_text = [100 * auto_bleu(text, n, tokenizer) for text in predictions]
        result = {
            "auto_bleu": float(np.mean(per_text)) if per_text else float("nan"),
            "auto_bleu_n": n,
            "auto_bleu_tokenizer": tokenizer,
        }
        if return_per_text:
            result["auto_bleu_per_text"] = per_text
        return result
