"""The offline spoken demo corpus: stories from `demo_text` → speech by espeak-ng voices (`tts`) → units by the
audio → units code path (MFCC features, a 500-centroid k-means fitted on the training part, repeats removed).

What `recipes/make_demo_corpus.py` writes (the embedded default data of `recipes/demo/`):

| folder | rows | voices |
|---|---|---|
| `pretrain/{train,validation}.parquet` | `units` of a story's title, then of the whole story; `units_text`, `topic`, `voice`; the units' run lengths `duration` (frames) and the words' times `aligned_text` (espeak-ng's word events), for interleaved training | training voices |
| `dpo/{train,validation}.parquet` | `prompt` (first sentence), `chosen` (the rest of the story), `rejected` (the rest of another story), with their texts | training voices |
| `eval/swuggy.parquet` | a word against a pronounceable non-word, by `voice`, with the word's `frequency` in the training stories | held-out voices |
| `eval/sblimp.parquet` | a sentence against the same sentence breaking one rule (`type`) | held-out voices |
| `eval/ssc.parquet` | a story against the same story whose ending is about a same-topic entity it never mentioned | held-out voices |
| `eval/tsc.parquet` | a story against the same story ending with a sentence from another topic | held-out voices |
| `eval/tsc_cross.parquet` | tSC-like items for cross-modal scoring: the `prompt` (all but the last sentence), the `positive` and `negative` endings, each spoken alone, with their texts | held-out voices |
| `kmeans.safetensors` | the 500 MFCC centroids | |
| `corpus.json` | seed, sizes, voices, TTS version and a digest of every dataset | |

Splits hold different story texts (pretraining validation, DPO and evaluation stories never occur in the
pretraining training stories). Everything is a function of the seed and the espeak-ng version: a rebuild
reproduces the committed data (`recipes/make_demo_corpus.py --verify`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time

import numpy as np

from slam_recipes.demo import text as demo_text
from slam_recipes.demo.tts import Voice, speak, tts_version

logger = logging.getLogger(__name__)

# Eight espeak-ng voice / rate / pitch combinations: six speak the training data, two only the benchmarks. They share
# one accent (en-US): with MFCC units, which carry acoustics rather than phonetic content, another accent or a female
# variant changes most units of the same text (a unit edit distance of 0.67-0.78 against 0.39 for another pitch), more
# than a demo-sized model can learn to bridge in minutes.
TRAIN_VOICES = (
    Voice("us-p35", "en-US", rate=175, pitch=35),
    Voice("us-p45", "en-US", rate=170, pitch=45),
    Voice("us-p55", "en-US", rate=180, pitch=55),
    Voice("us-p65", "en-US", rate=175, pitch=65),
    Voice("us-m1-p40", "en-US+m1", rate=175, pitch=40),
    Voice("us-m1-p60", "en-US+m1", rate=170, pitch=60),
)
EVAL_VOICES = (  # combinations never heard in training
    Voice("us-p50", "en-US", rate=178, pitch=50),
    Voice("us-m1-p50", "en-US+m1", rate=172, pitch=50),
)
MFCC_FRAME_RATE = 25  # frames per second before dedup, as mHuBERT-25Hz
BENCHMARKS = ("swuggy", "sblimp", "ssc", "tsc")
CROSS_MODAL_BENCHMARKS = ("tsc_cross",)  # prompt and endings spoken apart, with their texts (interleaved models)
DATASETS = (
    "pretrain/train", "pretrain/validation", "dpo/train", "dpo/validation",
    *(f"eval/{name}" for name in BENCHMARKS + CROSS_MODAL_BENCHMARKS),
)  # fmt: skip
ALIGNED_DATASETS = ("pretrain/train", "pretrain/validation")  # with run lengths and word alignments (interleaving)
KMEANS_FILE = "kmeans.safetensors"
MANIFEST_FILE = "corpus.json"
CHUNK_ROWS = 32  # rows spoken by one fresh espeak-ng process: the unit of reproducibility


@dataclasses.dataclass
class CorpusSizes:
    pretrain_train: int = 8000
    pretrain_validation: int = 200
    dpo_train: int = 1000
    dpo_validation: int = 100
    sblimp_items: int = 120  # per type, each spoken by every held-out voice
    story_items: int = 200  # sSC-like and tSC-like stories, each spoken by every held-out voice
    kmeans_stories: int = 600  # training stories (and their titles) whose frames fit the k-means
    kmeans_steps: int = 300


# ---------------------------------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------------------------------
def _unique_stories(
    num: int, rng: np.random.Generator, used: set[str], topic: str | None = None
) -> list[demo_text.Story]:
    """`num` stories whose texts are not in `used` (then added to it): on `topic`, or on every topic in turn."""
    names, found = list(demo_text.TOPICS), []
    while len(found) < num:
        item = demo_text.story(rng, topic or names[len(found) % len(names)])
        if item.text not in used:
            used.add(item.text)
            found.append(item)
    return found


def corpus_texts(seed: int, sizes: CorpusSizes) -> dict[str, list[dict]]:
    """Every dataset's rows before speech: texts under `<column>_text` for each audio column, plus metadata."""
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    train = _unique_stories(sizes.pretrain_train, rng, used)
    validation = _unique_stories(sizes.pretrain_validation, rng, used)
    counts: dict[str, int] = {}
    for item in train:
        for sentence in item.sentences:
            for word in sentence.words:
                counts[word] = counts.get(word, 0) + 1
    texts = {}
    for split, items in (("pretrain/train", train), ("pretrain/validation", validation)):
        rows = []
        for i, item in enumerate(items):  # the title, then the story, in one voice
            common = {"topic": item.topic, "voice": TRAIN_VOICES[i % len(TRAIN_VOICES)].name}
            name = f"{split.split('/')[1]}-{i}"
            rows.append({"id": f"{name}-title", "units_text": item.title(rng), **common})
            rows.append({"id": name, "units_text": item.text, **common})
        texts[split] = rows
    for split, num in (("dpo/train", sizes.dpo_train), ("dpo/validation", sizes.dpo_validation)):
        items = _unique_stories(2 * num, rng, used)
        rows = []
        for i in range(num):
            item, other = items[2 * i], items[2 * i + 1]  # `other` is a random topic: consecutive topics differ
            if rng.random() < 0.5:  # half the rejected continuations come from a story on the same topic
                (other,) = _unique_stories(1, rng, used, topic=item.topic)
            rows.append(
                {"id": f"{split.split('/')[1]}-{i}", "prompt_text": item.sentences[0].text + ".",
                 "chosen_text": " ".join(s.text + "." for s in item.sentences[1:]),
                 "rejected_text": " ".join(s.text + "." for s in other.sentences[1:]),
                 "voice": TRAIN_VOICES[i % len(TRAIN_VOICES)].name}
            )  # fmt: skip
        texts[split] = rows
    texts.update(_benchmark_texts(rng, sizes, used, counts))
    return texts


def _benchmark_texts(rng, sizes: CorpusSizes, used: set[str], counts: dict[str, int]) -> dict[str, list[dict]]:
    voices = [v.name for v in EVAL_VOICES]
    swuggy, avoid = [], set(demo_text.content_words()) | set(demo_text.lexicon()["function"])
    for word in demo_text.content_words():
        fake = demo_text.nonword(rng, word, avoid)
        for voice in voices:
            swuggy.append({"id": word, "voice": voice, "frequency": counts.get(word, 0),
                           "positive_text": word, "negative_text": fake})  # fmt: skip

    sblimp = []
    for kind in demo_text.SBLIMP_TYPES:
        for i in range(sizes.sblimp_items):
            while True:
                item = demo_text.story(rng)
                sentence = item.sentences[int(rng.integers(len(item.sentences)))]
                bad = demo_text.ungrammatical(rng, sentence, kind)
                if bad is not None:
                    break
            for voice in voices:
                sblimp.append({"id": f"{kind}-{i}", "voice": voice, "type": kind,
                               "positive_text": sentence.text + ".", "negative_text": " ".join(bad) + "."})  # fmt: skip

    items = _unique_stories(2 * sizes.story_items, rng, used)
    ssc, tsc, tsc_cross = [], [], []
    for i in range(sizes.story_items):
        item, other = items[2 * i], items[2 * i + 1]  # consecutive stories are on different topics
        start = " ".join(s.text + "." for s in item.sentences[:-1])
        wrong = demo_text.wrong_ending(rng, item)
        for voice in voices:
            common = {"id": str(i), "voice": voice, "positive_text": item.text}
            ssc.append({**common, "negative_text": f"{start} {wrong.text}."})
            tsc.append({**common, "negative_text": f"{start} {other.sentences[-1].text}.", "topic": item.topic})
            tsc_cross.append({"id": str(i), "voice": voice, "topic": item.topic, "prompt_text": start,
                              "positive_text": item.sentences[-1].text + ".",
                              "negative_text": other.sentences[-1].text + "."})  # fmt: skip
    return {
        "eval/swuggy": swuggy,
        "eval/sblimp": sblimp,
        "eval/ssc": ssc,
        "eval/tsc": tsc,
        "eval/tsc_cross": tsc_cross,
    }


def audio_columns(rows: list[dict]) -> list[str]:
    return [k[: -len("_text")] for k in rows[0] if k.endswith("_text")]


# ---------------------------------------------------------------------------------------------------------------------
# Speech → units
# ---------------------------------------------------------------------------------------------------------------------
def speak_rows(rows: list[dict], columns: list[str], num_workers: int = 2, aligned: bool = False) -> list[dict]:
    """Rows with an in-memory audio dict per audio column (`{"array", "sampling_rate"}`, what `read_audio` takes),
    and with `aligned` (one audio column) its words' times as `aligned_text` (`tts.word_alignment`). Chunks of
    CHUNK_ROWS rows are spoken by fresh espeak-ng processes."""
    if aligned and len(columns) != 1:
        raise ValueError(f"word alignments are kept for one audio column, got {columns}")
    voices = {v.name: v for v in TRAIN_VOICES + EVAL_VOICES}
    items = [(row[f"{c}_text"], voices[row["voice"]]) for row in rows for c in columns]
    rate, waves, words = speak(items, chunk_size=CHUNK_ROWS * len(columns), num_workers=num_workers)
    out, k = [], 0
    for row in rows:
        audio = {"aligned_text": words[k]} if aligned else {}
        for c in columns:
            audio[c] = {"array": waves[k].astype(np.float32) / 32768.0, "sampling_rate": rate}
            k += 1
        out.append({**row, **audio})
    return out


def build_demo_corpus(
    output_dir: str,
    *,
    seed: int = 0,
    sizes: CorpusSizes | None = None,
    kmeans_path: str | None = None,
    only: list[str] | None = None,
    max_rows: int | None = None,
    num_workers: int = 2,
    block_rows: int = 512,
) -> dict:
    """Build the corpus into `output_dir` (see the module docstring); returns the manifest. With `kmeans_path` the
    units use those centroids instead of fitting new ones; `only` (dataset names such as `eval/swuggy`) and
    `max_rows` (a multiple of CHUNK_ROWS keeps the audio identical) build a part, for checks."""
    import torch

    from slam_recipes.audio.features import build_feature_extractor, read_audio
    from slam_recipes.audio.kmeans import NearestCentroid, fit_kmeans, load_centroids, save_centroids
    from slam_recipes.audio.tokenizer import tokenize_rows, units_column_name, write_shard

    sizes = sizes or CorpusSizes()
    start = time.perf_counter()
    texts = corpus_texts(seed, sizes)
    extractor = build_feature_extractor("mfcc", mfcc_frame_rate=MFCC_FRAME_RATE)
    os.makedirs(output_dir, exist_ok=True)
    if kmeans_path:
        centroids = load_centroids(kmeans_path)
    else:
        rows = speak_rows(texts["pretrain/train"][: 2 * sizes.kmeans_stories], ["units"], num_workers)  # + titles
        frames = torch.cat(extractor([read_audio(row["units"])[0] for row in rows]))
        centroids = fit_kmeans(frames, 500, steps=sizes.kmeans_steps, seed=seed)
        kmeans_path = os.path.join(output_dir, KMEANS_FILE)
        save_centroids(kmeans_path, centroids)
        logger.info("k-means: 500 centroids fitted on %d frames of %d training utterances", len(frames), len(rows))
    assigner = NearestCentroid(centroids)
    assigner.check_dimension(extractor.dim, "mfcc")

    manifest = {
        "seed": seed,
        "sizes": dataclasses.asdict(sizes),
        "tts": tts_version(),
        "train_voices": [dataclasses.asdict(v) for v in TRAIN_VOICES],
        "eval_voices": [dataclasses.asdict(v) for v in EVAL_VOICES],
        "units": {
            "backend": "mfcc",
            "mfcc_frame_rate": MFCC_FRAME_RATE,
            "num_units": 500,
            "dedup": True,
            "kmeans": os.path.basename(kmeans_path),
        },
        "datasets": {},
    }
    for name, rows in texts.items():
        if only and name not in only:
            continue
        rows = rows[:max_rows] if max_rows else rows
        columns = audio_columns(rows)
        aligned = name in ALIGNED_DATASETS
        out, seconds = [], 0.0
        for block in range(0, len(rows), block_rows):
            spoken = speak_rows(rows[block : block + block_rows], columns, num_workers, aligned=aligned)
            tokenized, skipped, audio_seconds = tokenize_rows(
                spoken, columns, extractor, assigner, dedup=True, keep_durations=aligned
            )
            if skipped:
                raise RuntimeError(f"{name}: espeak-ng produced unreadable audio: {skipped[0]['error']}")
            seconds += audio_seconds
            out += [{k: v for k, v in row.items() if k != "file"} for row in tokenized]
        unit_columns = [units_column_name(c) for c in columns]
        write_shard(os.path.join(output_dir, name + ".parquet"), out, unit_columns)
        manifest["datasets"][name] = {
            "rows": len(out),
            "audio_hours": round(seconds / 3600, 3),
            "units": int(sum(len(row[c]) for row in out for c in unit_columns)),
            "digest": digest(out),
        }
        logger.info("%s: %d rows, %.2f h of audio", name, len(out), seconds / 3600)
    manifest["build_seconds"] = round(time.perf_counter() - start, 1)
    return manifest


def digest(rows: list[dict]) -> str:
    """A content hash of rows (units as integers, texts, metadata), independent of the parquet writer."""
    hasher = hashlib.sha256()
    for row in rows:
        clean = {
            k: (np.asarray(v).tolist() if isinstance(v, np.ndarray | list) else v) for k, v in sorted(row.items())
        }
        hasher.update(json.dumps(clean, sort_keys=True).encode())
    return hasher.hexdigest()


def read_rows(path: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def check_build_options(
    only: list[str] | None = None, max_rows: int | None = None, kmeans_path: str | None = None
) -> None:
    """A `ConfigError` for a dataset name that is not in DATASETS, a `max_rows` that is not a positive multiple of
    CHUNK_ROWS (the audio is spoken in chunks of that many rows, so a part reproduces the whole's first rows), or a
    `kmeans_path` that is not a .safetensors or .npy file (the corpus reads no pickles)."""
    from slam_recipes.errors import ConfigError

    if kmeans_path and os.path.splitext(kmeans_path)[1].lower() not in (".safetensors", ".npy"):
        raise ConfigError(f"kmeans_path {kmeans_path}: the demo corpus takes .safetensors or .npy centroids")

    unknown = sorted(set(only or []) - set(DATASETS))
    if unknown:
        raise ConfigError(f"only: unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
    if max_rows is not None and (max_rows < 1 or max_rows % CHUNK_ROWS):
        raise ConfigError(f"max_rows must be a positive multiple of {CHUNK_ROWS}, got {max_rows}")


def write_corpus(output_dir: str, *, overwrite: bool = False, **kwargs) -> dict:
    """Build into a temporary folder beside `output_dir`, then move the files into place: an interrupted or failed
    build leaves `output_dir` as it was. A folder holding other files is refused unless `overwrite`; options are
    checked (`check_build_options`) before anything is written."""
    import shutil

    from slam_recipes.errors import ConfigError

    check_build_options(kwargs.get("only"), kwargs.get("max_rows"), kwargs.get("kmeans_path"))
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ConfigError(f"{output_dir}: not empty; pass overwrite_output_dir to rebuild the corpus there")
    staging = output_dir.rstrip("/") + ".building"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        manifest = build_demo_corpus(staging, **kwargs)
        with open(os.path.join(staging, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        for folder, _, names in os.walk(staging):
            for name in names:
                source = os.path.join(folder, name)
                target = os.path.join(output_dir, os.path.relpath(source, staging))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def compare_corpus(
    reference_dir: str, rebuilt_dir: str, names: list[str], max_rows: int | None = None, kmeans: bool = False
) -> list[str]:
    """Differences between two corpora, one line per dataset that differs (its first differing row and column);
    with `max_rows`, only the first rows of the reference are compared; with `kmeans`, the centroids too."""
    from slam_recipes.audio.kmeans import load_centroids

    problems = []
    if kmeans and not load_centroids(os.path.join(reference_dir, KMEANS_FILE)).equal(
        load_centroids(os.path.join(rebuilt_dir, KMEANS_FILE))
    ):
        problems.append(f"{KMEANS_FILE}: the refitted centroids differ")
    for name in names:
        reference = read_rows(os.path.join(reference_dir, name + ".parquet"))
        rebuilt = read_rows(os.path.join(rebuilt_dir, name + ".parquet"))
        reference = reference[:max_rows] if max_rows else reference
        if len(reference) != len(rebuilt):
            problems.append(f"{name}: {len(rebuilt)} rows rebuilt, {len(reference)} expected")
            continue
        for i, (a, b) in enumerate(zip(reference, rebuilt, strict=True)):
            column = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), None)
            if column is not None:
                problems.append(f"{name}: row {i} differs in {column!r}")
                break
    return problems
