"""The Hub's audio datasets, read in their own schemas (tiny local parquet files with the audio embedded, as the Hub
serves them), tokenised straight into what the next recipe reads:

- the benchmark mirrors speed/sBLIMP (`id` int64, `positive` / `negative` audio at 16 kHz, `voice`, `type`, `subtype`,
  `positive_transcription`, `negative_transcription`: its card) and speed/sWUGGY, sStoryCloze, tStoryCloze
  (`id`, `positive`, `negative`) → pair datasets scored with ZeroSpeech 2021 grouping from their own columns;
- slprl/SpokenSwag (`prompt` / `chosen` / `rejected` audio at 24 kHz by Kokoro, their `_text`, `speaker` one of
  four voices: slamkit's `create_spoken_swag`; an `auto_bleu2` float, reported second-hand) → DPO pairs at 16 kHz,
  auto-BLEU-filtered on the texts;
- slprl/sTinyStories (`audio` at 16 kHz, `text`, `aligned_text` [{end_time, start_time, word}], `split_sentence`:
  its card) → units with the texts and word timings beside them;
- slprl/SALMon (`positive_audio` / `negative_audio`, `task`, `ind`: its card) → a pair dataset.
"""

import io
import os

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO, reference_pair_score, run_recipe
from scipy.signal import resample_poly

from slam_recipes.audio.features import SAMPLE_RATE, MFCCFeatures
from slam_recipes.audio.kmeans import NearestCentroid, fit_kmeans, save_centroids
from slam_recipes.audio.tokenizer import tokenize_rows

TOKENIZE = os.path.join(REPO, "recipes", "tokenize_audio.py")
CLIPS = [
    soundfile.read(os.path.join(REPO, "tests", "data", "librivox", f"sense_and_sensibility_01_austen_64kb-{n}.flac"),
                   dtype="float32")[0]
    for n in ("0870", "0880", "0930")
]  # fmt: skip
with open(os.path.join(REPO, "tests", "data", "librivox", "transcription")) as _f:
    WORDS = [line.split("<s>")[1].split("</s>")[0].split() for line in _f]


def piece(i: int, seconds: float, offset: float = 0.0) -> np.ndarray:
    clip = CLIPS[i % len(CLIPS)]
    start = int(offset * SAMPLE_RATE) % max(1, len(clip) - int(seconds * SAMPLE_RATE))
    return clip[start : start + int(seconds * SAMPLE_RATE)]


def audio_cell(audio: np.ndarray, rate: int, name: str) -> dict:
    """One embedded audio value as the Hub stores it: {"bytes": a WAV file at `rate`, "path": its name}."""
    if rate != SAMPLE_RATE:
        audio = resample_poly(audio, rate // np.gcd(rate, SAMPLE_RATE), SAMPLE_RATE // np.gcd(rate, SAMPLE_RATE))
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return {"bytes": buffer.getvalue(), "path": name}


def write_parquet(folder, columns: dict, features: dict) -> str:
    """`columns` as a Hub dataset's one parquet shard, `data/train-00000-of-00001.parquet`, with `features`."""
    from datasets import Audio, Dataset, Features, Value

    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    # Audio cells go in as {bytes, path} structs and are cast to Audio: encoding them would need torchcodec.
    stored = {c: {"bytes": Value("binary"), "path": Value("string")} if isinstance(f, Audio) else f
              for c, f in features.items()}  # fmt: skip
    dataset = Dataset.from_dict(columns, features=Features(stored)).cast(Features(features))
    dataset.to_parquet(os.path.join(folder, "data", "train-00000-of-00001.parquet"))
    return str(folder)


@pytest.fixture(scope="module")
def kmeans(tmp_path_factory):
    """MFCC (25 Hz) units with 50 centroids fitted on the real clips."""
    extractor = MFCCFeatures(frame_rate=25)
    centroids = fit_kmeans(torch.cat(extractor(CLIPS)), 50, steps=100, seed=0)
    path = tmp_path_factory.mktemp("km") / "mfcc50.safetensors"
    save_centroids(str(path), centroids)
    return str(path), extractor, NearestCentroid(centroids)


def tokenize(kmeans, source, output, *args):
    result = run_recipe(TOKENIZE, "--backend", "mfcc", "--mfcc_frame_rate", "25", "--kmeans_path", kmeans[0],
                        "--dataset_name", str(source), "--output_dir", str(output), *args)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from datasets import load_dataset

    return load_dataset(str(output), split="train")


def units_of(kmeans, audio: np.ndarray) -> np.ndarray:
    """The units of 16 kHz `audio` tokenised alone, repeats removed: the independent expectation."""
    _, extractor, assigner = kmeans
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    out, _, _ = tokenize_rows([{"audio": buffer.getvalue()}], ["audio"], extractor, assigner)
    return out[0]["units"]


# -- benchmarks -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sBLIMP", "sWUGGY", "sStoryCloze", "tStoryCloze"])
def test_a_speed_benchmark_mirror_is_scored_with_zerospeech_grouping(tmp_path, kmeans, tiny_unit_lm_dir, name):
    """Three items spoken by two voices each (six pairs): after tokenising, the pair dataset holds each side's units
    (those of its audio alone), keeps the item columns, and scores as the mean over (type, subtype, id) groups —
    three of them — checked against an independent scorer."""
    from datasets import Audio, Value
    from transformers import AutoModelForCausalLM

    from slam_recipes.evaluation.likelihood import evaluate_benchmark, load_pair_benchmark

    ids, voices = [0, 0, 1, 1, 2, 2], ["voice_a", "voice_b"] * 3
    positives = [piece(i, 1.0, 0.3 * k) for k, i in enumerate(ids)]
    negatives = [piece(i + 1, 1.0, 0.5 + 0.3 * k) for k, i in enumerate(ids)]
    columns = {
        "id": ids,
        "positive": [audio_cell(a, SAMPLE_RATE, f"{k}_pos.wav") for k, a in enumerate(positives)],
        "negative": [audio_cell(a, SAMPLE_RATE, f"{k}_neg.wav") for k, a in enumerate(negatives)],
    }
    features = {"id": Value("int64"), "positive": Audio(sampling_rate=16000), "negative": Audio(sampling_rate=16000)}
    if name == "sBLIMP":
        columns |= {"voice": voices, "type": ["syntax"] * 4 + ["semantics"] * 2, "subtype": ["agreement"] * 6,
                    "positive_transcription": [f"good {i}" for i in ids],
                    "negative_transcription": [f"bad {i}" for i in ids]}  # fmt: skip
        features |= {c: Value("string") for c in columns if c not in features}
    source = write_parquet(tmp_path / name, columns, features)
    rows = tokenize(kmeans, source, tmp_path / "units", "--dedup", "true")
    assert sorted(rows.column_names) == sorted({*columns, "file"})  # each audio column became its units, in place
    benchmark = load_pair_benchmark(name, str(tmp_path / "units"), num_units=50)
    assert benchmark.columns["id"] == ids
    for k in range(6):  # scored as `<S> u+2 … <S>` (slam_recipes.units.frame_units)
        assert np.array_equal(rows[k]["positive"], units_of(kmeans, positives[k]))
        assert np.array_equal(rows[k]["negative"], units_of(kmeans, negatives[k]))
        assert benchmark.positive[k].tolist() == [1, *(np.asarray(rows[k]["positive"]) + 2), 1]
    if name == "sBLIMP":
        assert benchmark.columns["voice"] == voices and benchmark.columns["positive_transcription"][0] == "good 0"
    model = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir)
    result = evaluate_benchmark(model, benchmark)
    assert result["num_pairs"] == 6 and result["num_groups"] == 3
    assert result["score"] == pytest.approx(reference_pair_score(model, benchmark))
    if name == "sBLIMP":
        assert set(result["breakdown"]["type"]) == {"syntax", "semantics"}


def test_salmon_audio_columns_become_a_pair_dataset(tmp_path, kmeans):
    from datasets import Audio, Value

    from slam_recipes.evaluation.likelihood import load_pair_benchmark

    columns = {
        "task": ["speaker_consistency"] * 2,
        "ind": [0, 1],
        "positive_audio": [audio_cell(piece(0, 1.0, k), SAMPLE_RATE, f"p{k}.wav") for k in range(2)],
        "negative_audio": [audio_cell(piece(1, 1.0, k), SAMPLE_RATE, f"n{k}.wav") for k in range(2)],
    }
    features = {"task": Value("string"), "ind": Value("int64"), "positive_audio": Audio(), "negative_audio": Audio()}
    rows = tokenize(kmeans, write_parquet(tmp_path / "salmon", columns, features), tmp_path / "units")
    assert {"positive", "negative", "task", "ind"} <= set(rows.column_names)
    assert np.array_equal(rows[1]["positive"], units_of(kmeans, piece(0, 1.0, 1)))
    assert len(load_pair_benchmark("salmon", str(tmp_path / "units"), num_units=50)) == 2


# -- SpokenSwag → DPO -------------------------------------------------------------------------------------------------
def test_spokenswag_at_24khz_becomes_filtered_dpo_pairs_at_16khz(tmp_path, kmeans):
    """Four pairs at 24 kHz, one of them with a repetitive chosen text: the audio is resampled to 16 kHz (its frames
    are those of the 16 kHz original, and at least 99 % of its units over all recordings, the tolerance stated in
    test_segmentation for resampled audio), and
    the DPO dataset holds the three pairs the paper's auto-BLEU filter (< 0.3 on prompt + chosen) keeps."""
    from datasets import Audio, Value

    from slam_recipes.preference.pairs import build_preference_datasets

    speakers = ["af_heart", "am_fenrir", "bf_emma", "bm_george"]  # Kokoro's four voices (slamkit create_spoken_swag)
    audio = {c: [piece(k + j, 1.2, 0.4 * k) for k in range(4)] for j, c in enumerate(("prompt", "chosen", "rejected"))}
    chosen_text = ["she sat down by the fire", "the rain stopped at noon", "we walked home together",
                   "the cat the cat the cat the cat the cat"]  # fmt: skip
    columns = {
        **{c: [audio_cell(a, 24000, f"{c}{k}.wav") for k, a in enumerate(audio[c])] for c in audio},
        "prompt_text": ["once upon a time", "in the morning", "after school", "there was a cat"],
        "chosen_text": chosen_text,
        "rejected_text": ["green ideas sleep", "table of moon", "quickly the of", "blue runs loud"],
        "speaker": speakers,
        "auto_bleu2": [0.0, 0.0, None, 0.6],
    }
    features = {c: Audio(sampling_rate=24000) for c in audio} | {
        c: Value("string") for c in ("prompt_text", "chosen_text", "rejected_text", "speaker")
    }
    features["auto_bleu2"] = Value("float64")
    source = write_parquet(tmp_path / "swag", columns, features)
    rows = tokenize(kmeans, source, tmp_path / "units", "--dedup", "false")
    assert rows["speaker"] == speakers and rows["chosen_text"] == chosen_text
    _, extractor, assigner = kmeans
    same = []  # per frame, over all twelve recordings (30 frames each: too few for a 1 % rate alone)
    for c in audio:
        for k in range(4):
            expected = assigner(extractor([audio[c][k]])[0]).numpy()
            assert len(rows[k][c]) == len(expected) == extractor.num_frames(len(audio[c][k]))
            same += (np.asarray(rows[k][c]) == expected).tolist()
    assert np.mean(same) >= 0.99  # measured: 358 of 360
    prompts = tokenize(kmeans, source, tmp_path / "prompts", "--audio_columns", "prompt", "--dedup", "false")
    assert "chosen" not in prompts.column_names and list(prompts["prompt"]) == list(rows["prompt"])  # others dropped
    train, _ = build_preference_datasets([str(tmp_path / "units")], num_units=50, dedup=True)
    assert len(train) == 3 and "the cat the cat" not in " ".join(train["chosen_text"])
    first = units_of(kmeans, audio["prompt"][0])
    assert train[0]["prompt"] == "<S>" + "".join(f"<Un{u}>" for u in first)
    assert train[0]["chosen"].endswith("<S>") and train[0]["rejected"].startswith("<Un")


# -- sTinyStories -----------------------------------------------------------------------------------------------------
def alignment(words: list[str], start: float, end: float) -> list[dict]:
    """Words spread evenly over [start, end) seconds, in the card's field order."""
    step = (end - start) / len(words)
    return [
        {"end_time": start + (i + 1) * step, "start_time": start + i * step, "word": w} for i, w in enumerate(words)
    ]


def test_stinystories_keeps_its_texts_and_word_timings_beside_the_units(tmp_path, kmeans):
    """Two stories under max_segment_seconds keep `text`, `aligned_text` and `split_sentence` as they are; a long one
    cut into fixed windows gives each window the words whose middle lies in it, timed from the window's start, and its
    text is those words: together the windows hold every word once, in order."""
    from datasets import Audio, List, Value

    pause = np.zeros(SAMPLE_RATE, np.float32)
    long_audio = np.concatenate([CLIPS[0], pause, CLIPS[1], pause, CLIPS[2], pause, CLIPS[0]])
    edges = np.cumsum([0, len(CLIPS[0]) + SAMPLE_RATE, len(CLIPS[1]) + SAMPLE_RATE, len(CLIPS[2]) + SAMPLE_RATE])
    long_words = []
    for k, i in enumerate((0, 1, 2, 0)):
        long_words += alignment(WORDS[i], edges[k] / SAMPLE_RATE, (edges[k] + len(CLIPS[i])) / SAMPLE_RATE)
    stories = [CLIPS[1], CLIPS[2], long_audio]
    aligned = [alignment(WORDS[1], 0.0, len(CLIPS[1]) / SAMPLE_RATE),
               alignment(WORDS[2], 0.0, len(CLIPS[2]) / SAMPLE_RATE), long_words]  # fmt: skip
    texts = [" ".join(WORDS[1]).capitalize() + ".", " ".join(WORDS[2]).capitalize() + ".", "A long story."]
    columns = {
        "audio": [audio_cell(a, SAMPLE_RATE, f"story{k}.wav") for k, a in enumerate(stories)],
        "text": texts,
        "aligned_text": aligned,
        "split_sentence": [False, True, False],
    }
    word = {"end_time": Value("float64"), "start_time": Value("float64"), "word": Value("string")}
    features = {"audio": Audio(sampling_rate=16000), "text": Value("string"), "aligned_text": List(word),
                "split_sentence": Value("bool")}  # fmt: skip
    source = write_parquet(tmp_path / "stories", columns, features)
    rows = tokenize(kmeans, source, tmp_path / "units", "--max_segment_seconds", "10", "--segmentation", "fixed",
                    "--segment_context_seconds", "0.5")  # fmt: skip
    short = [r for r in rows if r["file"] in ("story0.wav", "story1.wav")]
    assert [r["text"] for r in short] == texts[:2] and [r["aligned_text"] for r in short] == aligned[:2]
    assert [r["split_sentence"] for r in short] == [False, True]
    assert np.array_equal(short[0]["units"], units_of(kmeans, CLIPS[1]))
    windows = [r for r in rows if r["file"] == "story2.wav"]
    assert len(windows) >= 3 and windows == sorted(windows, key=lambda r: r["start"])
    rebuilt = [(w["word"], w["start_time"] + r["start"]) for r in windows for w in r["aligned_text"]]
    assert [word for word, _ in rebuilt] == [w["word"] for w in long_words]
    assert np.allclose([t for _, t in rebuilt], [w["start_time"] for w in long_words])
    for r in windows:
        assert r["text"] == " ".join(w["word"] for w in r["aligned_text"])
        assert all(0 <= (w["start_time"] + w["end_time"]) / 2 < r["end"] - r["start"] for w in r["aligned_text"])
    from slam_recipes.data.sources import build_pretraining_datasets

    train, _ = build_pretraining_datasets([str(tmp_path / "units")], num_units=50, context_length=1024, packing="none")
    assert len(train) == len(rows)
