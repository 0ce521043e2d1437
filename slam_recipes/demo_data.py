"""A small, seeded generator of speech-like unit sequences: the embedded default data of `recipes/demo/`.

It stands in for real tokenised speech until the offline spoken corpus lands, and it has the structure a speech LM
must learn, so a falling loss means something:

- 40 "phones", each spoken as 3 sub-phonetic states; each state has 4 unit variants (480 of the 500 units), and a
  speaker prefers one variant per state (as HuBERT clusters split by voice);
- a lexicon of words (fixed phone strings) and a small grammar (determiner, adjective, noun, verb, preposition)
  with topic-specific nouns and verbs, so stories stay on one topic;
- each speaker holds each state for 1-3 frames; consecutive repeats are then removed (dedup), as in the recipe.

The stories go to `data/demo/pretrain/`. SpokenSwag-style preference pairs for the demo DPO recipe go to
`data/demo/dpo/`: a first sentence, its continuation on the same topic (chosen) and a continuation on another
topic (rejected). Pair datasets for the evaluation recipe go to `data/demo/eval/`: `swuggy.jsonl` (a word against a
non-word made of the same number of phones, by voice, with the word's frequency in the training stories),
`sblimp.jsonl` (a sentence against the same words in a broken order, by type and voice) and `tsc.jsonl` (a first
sentence continued on its topic against the same sentence continued on another topic).

Regenerate the shipped files with `python -m slam_recipes.demo_data --output_dir data/demo`.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

NUM_PHONES = 40
STATES_PER_PHONE = 3
VARIANTS_PER_STATE = 4
NUM_SPEAKERS = 10
TOPICS = ("sea", "farm", "city", "forest")
_SYLLABLES = ("ka", "lo", "mi", "su", "te", "ra", "no", "pi", "da", "ve", "bu", "go", "he", "ji", "fo", "we")


def _words(rng: np.random.Generator, n: int, used: set[str]) -> list[str]:
    words = []
    while len(words) < n:
        word = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(1, 4))))
        if word not in used:
            used.add(word)
            words.append(word)
    return words


def build_grammar(seed: int = 0) -> dict:
    """Lexicon (word → phone ids) and word classes, from `seed`."""
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    grammar = {
        "det": _words(rng, 3, used),
        "adj": _words(rng, 12, used),
        "prep": _words(rng, 4, used),
        "noun": {topic: _words(rng, 10, used) for topic in TOPICS},
        "verb": {topic: _words(rng, 6, used) for topic in TOPICS},
    }
    # Each word is a fixed phone string: 2-6 phones.
    grammar["lexicon"] = {w: rng.integers(0, NUM_PHONES, size=int(rng.integers(2, 7))).tolist() for w in sorted(used)}
    return grammar


def _noun_phrase(rng, grammar, topic) -> list[str]:
    words = [rng.choice(grammar["det"])]
    if rng.random() < 0.5:
        words.append(rng.choice(grammar["adj"]))
    words.append(rng.choice(grammar["noun"][topic]))
    return words


def sentence(rng: np.random.Generator, grammar: dict, topic: str) -> list[str]:
    """NP VERB NP (PREP NP)?"""
    words = (
        _noun_phrase(rng, grammar, topic) + [rng.choice(grammar["verb"][topic])] + _noun_phrase(rng, grammar, topic)
    )
    if rng.random() < 0.3:
        words += [rng.choice(grammar["prep"])] + _noun_phrase(rng, grammar, topic)
    return [str(w) for w in words]


def speak(rng: np.random.Generator, words: list[str], grammar: dict, speaker: int) -> list[int]:
    """Words → deduplicated units as `speaker` would say them."""
    voice = np.random.default_rng(1000 + speaker)
    preferred = voice.integers(0, VARIANTS_PER_STATE, size=(NUM_PHONES, STATES_PER_PHONE))
    frames: list[int] = []
    for word in words:
        for phone in grammar["lexicon"][word]:
            for state in range(STATES_PER_PHONE):
                variant = preferred[phone, state] if rng.random() < 0.85 else rng.integers(0, VARIANTS_PER_STATE)
                unit = (phone * STATES_PER_PHONE + state) * VARIANTS_PER_STATE + int(variant)
                frames.extend([unit] * int(rng.integers(1, 4)))
    units = np.asarray(frames)
    keep = np.concatenate([[True], units[1:] != units[:-1]])
    return units[keep].tolist()


def generate_stories(num_stories: int, seed: int, grammar_seed: int = 0) -> list[dict]:
    """`num_stories` rows of {units, text, topic, speaker}: 2-3 sentences on one topic each."""
    grammar = build_grammar(grammar_seed)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_stories):
        topic = str(rng.choice(TOPICS))
        speaker = int(rng.integers(0, NUM_SPEAKERS))
        sentences = [sentence(rng, grammar, topic) for _ in range(int(rng.integers(2, 4)))]
        words = [w for s in sentences for w in s]
        rows.append(
            {
                "units": speak(rng, words, grammar, speaker),
                "text": ". ".join(" ".join(s) for s in sentences) + ".",
                "topic": topic,
                "speaker": f"spk{speaker}",
            }
        )
    return rows


def generate_preference_pairs(num_pairs: int, seed: int, grammar_seed: int = 0) -> list[dict]:
    """SpokenSwag-style pairs: prompt = a first sentence, chosen = its continuation on the same topic, rejected = a
    continuation on another topic; each part spoken on its own by one speaker, with its text."""
    grammar = build_grammar(grammar_seed)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_pairs):
        topic = str(rng.choice(TOPICS))
        other = str(rng.choice([t for t in TOPICS if t != topic]))
        speaker = int(rng.integers(0, NUM_SPEAKERS))
        prompt = sentence(rng, grammar, topic)
        endings = {t: [sentence(rng, grammar, t) for _ in range(int(rng.integers(1, 3)))] for t in (topic, other)}
        row = {"prompt": speak(rng, prompt, grammar, speaker), "prompt_text": " ".join(prompt) + "."}
        for name, t in (("chosen", topic), ("rejected", other)):
            row[name] = speak(rng, [w for s in endings[t] for w in s], grammar, speaker)
            row[f"{name}_text"] = ". ".join(" ".join(s) for s in endings[t]) + "."
        rows.append(row)
    return rows


def generate_eval_pairs(seed: int, grammar_seed: int = 0, train_texts: list[str] | None = None) -> dict[str, list]:
    """The demo's three pair benchmarks (rows in the evaluation recipe's pair format), from `seed`."""
    grammar = build_grammar(grammar_seed)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for text in train_texts or []:
        for word in text.replace(".", "").split():
            counts[word] = counts.get(word, 0) + 1
    lexicon = grammar["lexicon"]
    known = {tuple(phones) for phones in lexicon.values()}
    voices = range(4)

    swuggy = []
    for word in sorted(lexicon):
        phones = list(lexicon[word])
        while tuple(phones) in known:  # a non-word: about half the phones replaced, same length
            phones = [int(rng.integers(0, NUM_PHONES)) if rng.random() < 0.5 else p for p in lexicon[word]]
        grammar["lexicon"]["*" + word] = phones
        for voice in voices:
            swuggy.append(
                {
                    "positive": speak(rng, [word], grammar, voice),
                    "negative": speak(rng, ["*" + word], grammar, voice),
                    "id": word,
                    "voice": f"spk{voice}",
                    "frequency": counts.get(word, 0),
                    "positive_text": word,
                    "negative_text": "*" + word,
                }
            )

    sblimp = []
    for item in range(75):
        topic = str(rng.choice(TOPICS))
        words = sentence(rng, grammar, topic)
        verb = next(i for i, w in enumerate(words) if w in grammar["verb"][topic])
        broken = {
            "verb_order": words[:verb] + words[verb + 1 :] + [words[verb]],  # the verb moved to the end
            "determiner_order": [words[1], words[0]] + words[2:],  # the first determiner after its next word
        }
        for kind, bad in broken.items():
            for voice in rng.choice(list(voices), size=2, replace=False):
                sblimp.append(
                    {
                        "positive": speak(rng, words, grammar, int(voice)),
                        "negative": speak(rng, bad, grammar, int(voice)),
                        "id": f"{kind}_{item}",
                        "voice": f"spk{voice}",
                        "type": kind,
                        "positive_text": " ".join(words),
                        "negative_text": " ".join(bad),
                    }
                )

    tsc = []
    for item in range(200):
        topic = str(rng.choice(TOPICS))
        other = str(rng.choice([t for t in TOPICS if t != topic]))
        voice = int(rng.integers(0, NUM_SPEAKERS))
        prompt = sentence(rng, grammar, topic)
        endings = {t: sentence(rng, grammar, t) for t in (topic, other)}
        spoken_prompt = speak(rng, prompt, grammar, voice)  # one recording of the shared story start, as with TTS
        tsc.append(
            {
                "positive": spoken_prompt + speak(rng, endings[topic], grammar, voice),
                "negative": spoken_prompt + speak(rng, endings[other], grammar, voice),
                "id": str(item),
                "positive_text": " ".join(prompt) + ". " + " ".join(endings[topic]) + ".",
                "negative_text": " ".join(prompt) + ". " + " ".join(endings[other]) + ".",
            }
        )
    return {"swuggy": swuggy, "sblimp": sblimp, "tsc": tsc}


def _write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


def write_demo_corpus(
    output_dir: str,
    num_train: int = 1500,
    num_validation: int = 150,
    seed: int = 0,
    num_pairs: int = 400,
    num_validation_pairs: int = 40,
) -> None:
    """Write `pretrain/{train,validation}.jsonl` (stories), `dpo/{train,validation}.jsonl` (pairs) and
    `eval/{swuggy,sblimp,tsc}.jsonl` (benchmarks); splits hold different stories from the same grammar and
    speakers."""
    for folder in ("pretrain", "dpo", "eval"):
        os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
    train_texts = []
    for split, n, split_seed in (("train", num_train, seed + 1), ("validation", num_validation, seed + 2)):
        rows = generate_stories(n, split_seed, grammar_seed=seed)
        _write_jsonl(os.path.join(output_dir, "pretrain", f"{split}.jsonl"), rows)
        if split == "train":
            train_texts = [row["text"] for row in rows]
    for split, n, split_seed in (("train", num_pairs, seed + 3), ("validation", num_validation_pairs, seed + 4)):
        rows = generate_preference_pairs(n, split_seed, grammar_seed=seed)
        _write_jsonl(os.path.join(output_dir, "dpo", f"{split}.jsonl"), rows)
    for name, rows in generate_eval_pairs(seed + 5, grammar_seed=seed, train_texts=train_texts).items():
        _write_jsonl(os.path.join(output_dir, "eval", f"{name}.jsonl"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="data/demo")
    parser.add_argument("--num_train", type=int, default=1500)
    parser.add_argument("--num_validation", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_demo_corpus(args.output_dir, args.num_train, args.num_validation, args.seed)


if __name__ == "__main__":
    main()
