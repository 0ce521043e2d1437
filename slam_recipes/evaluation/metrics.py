"""Text metrics of the generative evaluation: auto-BLEU (repetition) and perplexity under a causal text LM.

auto-BLEU is also the repetition filter of the DPO data (`slam_recipes.preference.pairs`), so both use this one function.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence

from slam_recipes.configs import check_auto_bleu  # the options' one check (configs: a leaf module)

_NORMALIZED_WORD = re.compile(r"[\w']+")


@functools.cache
def _nltk_word_tokenizer():
    from nltk.tokenize import NLTKWordTokenizer  # nltk's import is slow (seconds); its tokenizer needs no data files

    return NLTKWordTokenizer()


def auto_bleu_words(text: str, tokenizer: str = "nltk") -> list[str]:
    """The words auto-BLEU counts in `text`.

    - "nltk" (the paper's): NLTK's Treebank-style `NLTKWordTokenizer`, as slamkit's `calc_ngram` uses it
      (slamkit/utils/calculation_utils.py:32-35). Case is kept, punctuation marks are words of their own, clitics
      are split ("can't" → "ca", "n't"), and a full stop is split off only at the end of the text ("ran." stays one
      word mid-text).
    - "normalized": lower-cased runs of letters, digits and apostrophes; punctuation is dropped.

    Raises `ConfigError` for another `tokenizer`.
    """
    check_auto_bleu(1, tokenizer)
    if tokenizer == "nltk":
        return _nltk_word_tokenizer().tokenize(text)
    return _NORMALIZED_WORD.findall(text.lower())


def auto_bleu(text: str, n: int = 2, tokenizer: str = "nltk") -> float:
    """Share of the word n-gram positions of `text` whose n-gram also occurs at another position (0 = no repetition,
    1 = every n-gram repeats); a float in [0, 1]. A text with fewer than n words scores 0.

    The paper's definition: slamkit's `calc_auto_bleu` (slamkit/utils/calculation_utils.py:37-47), used for the
    generative evaluation (slamkit/metric/generative_metric.py:112-130) and the DPO repetition filter
    (slamkit/data/hf_dataset.py:127-133). Words come from `auto_bleu_words(text, tokenizer)`: with the default
    "nltk", "the cat saw the cat" → bigrams (the cat) (cat saw) (saw the) (the cat): 2 of 4 repeat → 0.5, and
    "The dog ran. the dog sat." → 0 (case and punctuation tell the bigrams apart; "normalized" gives 0.4).

    Raises `ConfigError` when n < 1 or `tokenizer` is not one of `AUTO_BLEU_TOKENIZERS`.
    """
    check_auto_bleu(n, tokenizer)
    words = auto_bleu_words(text, tokenizer)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(counts[g] > 1 for g in grams) / len(grams)


def text_token_ids(tokenizer, text: str) -> list[int]:
    """`text` as the text LM reads it: with its own special tokens, and a BOS in front when the tokenizer has one
    but does not add it (GPT-2 style), so that the first word is scored too."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def text_nll(
    texts: Sequence[str], model, tokenizer, *, batch_size: int = 16, max_length: int | None = None
) -> list[tuple[float, int]]:
    """(summed negative log-likelihood in nats, scored tokens) of each text under a causal LM: every token after the
    first is predicted from the ones before it. An empty text has no scored token: (0.0, 0)."""
    import torch

    sequences = [text_token_ids(tokenizer, t) for t in texts]
    if max_length:
        sequences = [s[:max_length] for s in sequences]
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    order = [i for i in order if len(sequences[i]) > 1]
    device = model.device
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, : len(sequences[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets, target_mask = ids[:, 1:], mask[:, 1:].bool()
        token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        sums = (token_nll * target_mask).sum(dim=1).tolist()
        counts = target_mask.sum(dim=1).tolist()
        for row, i in enumerate(batch):
            results[i] = (float(sums[row]), int(counts[row]))
    return results


def perplexity_summary(nll: Sequence[tuple[float, int]]) -> dict:
    """GenPPL over files, as the paper's code (slamkit) computes it: each file's NLL is averaged over its tokens,
    those means are averaged over files, and the result is exponentiated — exp(mean over files of mean token NLL),
    reported as `genppl`. For comparison: the mean of per-file perplexities (`mean_file_ppl`) and the token-weighted
    exp of the mean NLL over all tokens (`token_ppl`). Files whose transcript has no scored token (empty text) are
    counted in `empty` and left out."""
    scored = [(s, n) for s, n in nll if n > 0]
    file_nll = [s / n for s, n in scored]
    tokens = sum(n for _, n in scored)
    nan = float("nan")
    return {
        "genppl": math.exp(statistics.fmean(file_nll)) if file_nll else nan,
        "mean_file_ppl": statistics.fmean(math.exp(x) for x in file_nll) if file_nll else nan,
        "token_ppl": math.exp(sum(s for s, _ in scored) / tokens) if tokens else nan,
        "scored": len(scored),
        "empty": len(nll) - len(scored),
    }
