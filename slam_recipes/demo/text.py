"""The text side of the offline spoken demo corpus: a seeded generator of short English stories from a small
grammar and lexicon written for this project, and the minimal pairs of the demo benchmarks.

- **Topics.** Five topics (farm, sea, forest, city, kitchen), each with its own nouns, verbs and adjectives, so an
  ending on another topic is detectable (tSC-like).
- **Agreement.** Every noun phrase is singular or plural; its determiner agrees with it (`a`/`this`/`that` vs
  `some`/`these`/`those`/`two`) and a subject's verb agrees with the subject (`feeds` vs `feed`). Adjectives come
  before the noun. Minimal ungrammatical variants break exactly one of these rules (sBLIMP-like).
- **Titles.** Each story has a short title (a noun, an adjective and a noun, or two nouns), an utterance of its own.
- **Stories.** A story introduces a few entities (a noun, a number, maybe an adjective), talks about them, and ends
  with its hero acting on the entity of the first sentence, so a coherent ending is predictable from the story and
  an ending about an entity the story never mentioned, even on the same topic, is not (sSC-like).
- **Non-words.** Pronounceable strings from an English-like syllable grammar, with the word's syllable count and
  never a word of the lexicon (sWUGGY-like).

Everything is a pure function of the seed: same seed, same texts, on any machine.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

# (singular, plural) nouns, (plural/base, 3rd person singular) verbs, adjectives; every word starts with a consonant,
# so `a` never needs to be `an`.
TOPICS: dict[str, dict[str, list]] = {
    "farm": {
        "nouns": [("farmer", "farmers"), ("cow", "cows"), ("horse", "horses"), ("pig", "pigs"), ("goat", "goats"),
                  ("hen", "hens"), ("barn", "barns"), ("tractor", "tractors"), ("duck", "ducks"),
                  ("donkey", "donkeys")],
        "verbs": [("feed", "feeds"), ("milk", "milks"), ("wash", "washes"), ("ride", "rides"), ("brush", "brushes"),
                  ("chase", "chases")],
        "adjectives": ["muddy", "hungry", "brown", "lazy"],
    },
    "sea": {
        "nouns": [("sailor", "sailors"), ("boat", "boats"), ("whale", "whales"), ("crab", "crabs"),
                  ("shell", "shells"), ("ship", "ships"), ("gull", "gulls"), ("net", "nets"), ("diver", "divers"),
                  ("dolphin", "dolphins")],
        "verbs": [("sail", "sails"), ("catch", "catches"), ("splash", "splashes"), ("drag", "drags"),
                  ("tow", "tows"), ("spot", "spots")],
        "adjectives": ["salty", "wet", "blue", "giant"],
    },
    "forest": {
        "nouns": [("hunter", "hunters"), ("fox", "foxes"), ("wolf", "wolves"), ("bear", "bears"),
                  ("rabbit", "rabbits"), ("squirrel", "squirrels"), ("tree", "trees"), ("nest", "nests"),
                  ("mushroom", "mushrooms"), ("beetle", "beetles")],
        "verbs": [("hunt", "hunts"), ("climb", "climbs"), ("smell", "smells"), ("hide", "hides"), ("dig", "digs"),
                  ("track", "tracks")],
        "adjectives": ["wild", "green", "furry", "dark"],
    },
    "city": {
        "nouns": [("driver", "drivers"), ("bus", "buses"), ("taxi", "taxis"), ("shop", "shops"),
                  ("tower", "towers"), ("baker", "bakers"), ("doctor", "doctors"), ("train", "trains"),
                  ("bridge", "bridges"), ("lamp", "lamps")],
        "verbs": [("drive", "drives"), ("park", "parks"), ("paint", "paints"), ("visit", "visits"),
                  ("clean", "cleans"), ("repair", "repairs")],
        "adjectives": ["busy", "noisy", "tall", "yellow"],
    },
    "kitchen": {
        "nouns": [("cook", "cooks"), ("pot", "pots"), ("cake", "cakes"), ("spoon", "spoons"), ("pan", "pans"),
                  ("kettle", "kettles"), ("bowl", "bowls"), ("cup", "cups"), ("plate", "plates"), ("pie", "pies")],
        "verbs": [("stir", "stirs"), ("bake", "bakes"), ("heat", "heats"), ("fill", "fills"), ("taste", "tastes"),
                  ("mix", "mixes")],
        "adjectives": ["hot", "sweet", "sticky", "shiny"],
    },
}  # fmt: skip
SHARED_ADJECTIVES = ["big", "small", "tiny", "happy"]
PREPOSITIONS = ["near", "behind", "under", "beside"]
DETERMINERS = {  # (first mention, later mentions), by number
    False: (["a"], ["the", "this", "that"]),
    True: (["some", "two"], ["the", "these", "those"]),
}
OTHER_NUMBER = {"this": "these", "these": "this", "that": "those", "those": "that", "a": "some", "some": "a"}
SBLIMP_TYPES = ("subject_verb_agreement", "determiner_noun_agreement", "adjective_noun_order")

_ONSETS = ["b", "bl", "br", "d", "dr", "f", "fl", "fr", "g", "gl", "gr", "k", "l", "m", "n", "p", "pl", "pr", "r",
           "s", "sl", "sn", "st", "t", "tr", "v", "w", "z"]  # fmt: skip
_VOWELS = ["a", "e", "i", "o", "u", "ee", "oo", "ai", "oa"]
_CODAS = ["", "", "n", "t", "d", "k", "m", "p", "s", "nd", "nt", "st", "mp", "nk", "l"]


def pick(rng: np.random.Generator, options):
    """One of `options`, uniformly: the draw `rng.choice(options)` makes (the same random stream, so the same
    corpus), without converting `options` to an array each time (twice as fast over a corpus)."""
    return options[int(rng.integers(len(options)))]


@dataclasses.dataclass(frozen=True)
class Entity:
    """A thing a story talks about: one noun, singular or plural, maybe with an adjective."""

    noun: tuple[str, str]
    plural: bool
    adjective: str | None = None

    def phrase(self, rng: np.random.Generator, first: bool) -> list[str]:
        determiner = pick(rng, DETERMINERS[self.plural][0 if first else 1])
        return (
            ([determiner] if determiner else [])
            + ([self.adjective] if self.adjective else [])
            + [self.noun[int(self.plural)]]
        )


@dataclasses.dataclass
class Sentence:
    """Words plus where the parts are, so minimal pairs can edit exactly one of them."""

    words: list[str]
    subject: tuple[int, int]  # [start, end) word span
    verb: int
    objects: list[tuple[int, int]]  # noun phrase spans after the verb
    subject_plural: bool

    @property
    def text(self) -> str:
        return " ".join(self.words)


def lexicon() -> dict[str, list[str]]:
    """Word classes of the grammar: every word a story can contain."""
    words = {"nouns": [], "verbs": [], "adjectives": list(SHARED_ADJECTIVES)}
    for topic in TOPICS.values():
        words["nouns"] += [w for pair in topic["nouns"] for w in pair]
        words["verbs"] += [w for pair in topic["verbs"] for w in pair]
        words["adjectives"] += topic["adjectives"]
    words["function"] = sorted({d for sets in DETERMINERS.values() for s in sets for d in s} | {*PREPOSITIONS, "and"})
    return words


def content_words() -> list[str]:
    """The words of the sWUGGY-like benchmark: every noun (both numbers), verb (both forms) and adjective."""
    words = lexicon()
    return words["nouns"] + words["verbs"] + words["adjectives"]


def _clause(
    rng: np.random.Generator, topic: str, subject: Entity, obj: Entity, mentioned: set, place: Entity | None = None
) -> Sentence:
    words = subject.phrase(rng, subject not in mentioned)
    span = (0, len(words))
    verb = TOPICS[topic]["verbs"][int(rng.integers(len(TOPICS[topic]["verbs"])))]
    words.append(verb[0] if subject.plural else verb[1])
    phrase = obj.phrase(rng, obj not in mentioned)
    objects = [(len(words), len(words) + len(phrase))]
    words += phrase
    mentioned.update((subject, obj))
    if place is not None:
        words.append(pick(rng, PREPOSITIONS))
        phrase = place.phrase(rng, place not in mentioned)
        objects.append((len(words), len(words) + len(phrase)))
        words += phrase
        mentioned.add(place)
    return Sentence(words, span, span[1], objects, subject.plural)


def _entity(rng: np.random.Generator, topic: str, noun: tuple[str, str], adjective_p: float = 0.6) -> Entity:
    adjectives = TOPICS[topic]["adjectives"] + SHARED_ADJECTIVES
    adjective = pick(rng, adjectives) if rng.random() < adjective_p else None
    return Entity(noun, bool(rng.random() < 0.4), adjective)


@dataclasses.dataclass
class Story:
    topic: str
    sentences: list[Sentence]
    hero: Entity
    thing: Entity
    entities: list[Entity]

    @property
    def text(self) -> str:
        return " ".join(s.text + "." for s in self.sentences)

    def title(self, rng: np.random.Generator) -> str:
        """A title, spoken as an utterance of its own before the story: one or two of its nouns, maybe with an
        adjective, with no determiner ("Donkeys.", "Muddy donkey.", "Cows and barn.") — short utterances, as real
        corpora have, in which words are said in isolation."""
        first, second = self.hero, self.thing
        noun = first.noun[int(first.plural)]
        kind = int(rng.integers(3))
        if kind == 0:
            words = [noun]
        elif kind == 1:
            words = [first.adjective or pick(rng, TOPICS[self.topic]["adjectives"]), noun]
        else:
            words = [noun, "and", second.noun[int(second.plural)]]
        return " ".join(words).capitalize() + "."


def story(rng: np.random.Generator, topic: str | None = None) -> Story:
    """3-5 sentences on one topic. The first introduces the hero and a thing; the middle ones mention them and one
    or two more entities; the last has the hero act on the thing again."""
    topic = topic or pick(rng, list(TOPICS))
    nouns = TOPICS[topic]["nouns"]
    picks = rng.choice(len(nouns), size=4, replace=False)
    hero, thing, other, place = (_entity(rng, topic, nouns[int(i)]) for i in picks)
    mentioned: set = set()
    sentences = [_clause(rng, topic, hero, thing, mentioned)]
    cast = [hero, thing, other]
    for _ in range(int(rng.integers(1, 4))):
        subject, obj = (cast[int(i)] for i in rng.choice(3, size=2, replace=False))
        sentences.append(_clause(rng, topic, subject, obj, mentioned, place if rng.random() < 0.4 else None))
    sentences.append(ending(rng, topic, hero, thing, mentioned))
    return Story(topic, sentences, hero, thing, [hero, thing, other, place])


def ending(rng: np.random.Generator, topic: str, hero: Entity, thing: Entity, mentioned: set) -> Sentence:
    """The hero acts on `thing` (definite: the story knows both)."""
    return _clause(rng, topic, hero, thing, set(mentioned) | {hero, thing})


def stories(num: int, seed: int) -> list[Story]:
    """`num` stories from `seed`, topics in turn so every topic is equally common."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    return [story(rng, names[i % len(names)]) for i in range(num)]


# ---------------------------------------------------------------------------------------------------------------------
# Minimal pairs
# ---------------------------------------------------------------------------------------------------------------------
def wrong_ending(rng: np.random.Generator, item: Story) -> Sentence:
    """sSC-like: the hero acts on an entity of the same topic that the story never mentioned."""
    used = {e.noun for e in item.entities}
    nouns = [n for n in TOPICS[item.topic]["nouns"] if n not in used]
    stranger = _entity(rng, item.topic, nouns[int(rng.integers(len(nouns)))])
    stranger = dataclasses.replace(stranger, plural=item.thing.plural, adjective=stranger.adjective)
    return _clause(rng, item.topic, item.hero, stranger, {item.hero, stranger})


def ungrammatical(rng: np.random.Generator, sentence: Sentence, kind: str) -> list[str] | None:
    """A minimally ungrammatical variant of `sentence` breaking one rule, or None when it has nothing to break:
    `subject_verb_agreement` (the verb in the other number: one word), `determiner_noun_agreement` (a determiner of
    the other number: one word), `adjective_noun_order` (an adjective after its noun: two adjacent words swapped)."""
    words = list(sentence.words)
    if kind == "subject_verb_agreement":
        verb = words[sentence.verb]
        forms = next(pair for t in TOPICS.values() for pair in t["verbs"] if verb in pair)
        words[sentence.verb] = forms[1] if verb == forms[0] else forms[0]
        return words
    spans = [sentence.subject, *sentence.objects]
    if kind == "determiner_noun_agreement":
        options = [start for start, _ in spans if words[start] in OTHER_NUMBER]
        if not options:
            return None
        start = options[int(rng.integers(len(options)))]
        words[start] = OTHER_NUMBER[words[start]]
        return words
    if kind == "adjective_noun_order":
        options = [start + 1 for start, end in spans if end - start == 3]
        if not options:
            return None
        i = options[int(rng.integers(len(options)))]
        words[i], words[i + 1] = words[i + 1], words[i]
        return words
    raise ValueError(f"unknown sBLIMP-like type {kind!r}")


def syllables(word: str) -> int:
    """Vowel groups in the spelling (a final silent e not counted): good enough to match non-word lengths."""
    groups = re.findall(r"[aeiouy]+", word.lower())
    if word.endswith("e") and not word.endswith(("le", "ee")) and len(groups) > 1:
        return len(groups) - 1
    return max(1, len(groups))


def nonword(rng: np.random.Generator, word: str, avoid: set[str]) -> str:
    """A pronounceable non-word with `word`'s syllable count, not in `avoid`."""
    while True:
        parts = []
        for i in range(syllables(word)):
            coda = pick(rng, _CODAS) if i == syllables(word) - 1 else ""
            parts.append(pick(rng, _ONSETS) + pick(rng, _VOWELS) + coda)
        candidate = "".join(parts)
        if candidate not in avoid:
            avoid.add(candidate)
            return candidate
