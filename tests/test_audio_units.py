"""Audio → units: features (tiny random HuBERT, MFCC), k-means (pickle opt-in, fit), the sharded, resumable run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO, run_recipe

from slam_recipes.audio.features import (
    HubertFeatures,
    MFCCFeatures,
    read_audio,
    receptive_field,
    samples_before_resampling,
)
from slam_recipes.audio.kmeans import NearestCentroid, fit_kmeans, inertia, load_centroids, save_centroids
from slam_recipes.audio.tokenizer import open_audio_source, tokenize_audio, write_report
from slam_recipes.errors import ConfigError, DataError

TOKENIZE = os.path.join(REPO, "recipes", "tokenize_audio.py")
FIT = os.path.join(REPO, "recipes", "fit_kmeans.py")
BASE_STRIDES = (5, 2, 2, 2, 2, 2, 2)  # HuBERT base: 320 samples per frame, 50 frames/s


def tiny_hubert(folder, strides=BASE_STRIDES, norm="group"):
    """`norm` "group": group-normalised convolutions, as HuBERT base and mHuBERT; "layer": as HuBERT large."""
    from transformers import HubertConfig, HubertModel

    kernels = (10,) + (3,) * (len(strides) - 3) + (2, 2)
    config = HubertConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * len(strides), conv_stride=strides, conv_kernel=kernels,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm, do_stable_layer_norm=norm == "layer",
    )  # fmt: skip
    torch.manual_seed(0)
    HubertModel(config).save_pretrained(folder)
    return str(folder)


def write_wav(path, audio, rate=16000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, audio, rate)
    return str(path)


def noise(seconds, seed=0, rate=16000):
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    return tiny_hubert(tmp_path_factory.mktemp("hubert"))


# -- features ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strides, rate", [(BASE_STRIDES, 50), ((*BASE_STRIDES, 2), 25)])
def test_hubert_units_in_range_at_the_model_frame_rate(tmp_path, strides, rate):
    extractor = HubertFeatures(tiny_hubert(tmp_path / "h", strides), layer=2)
    assigner = NearestCentroid(torch.randn(20, 32))
    frames = extractor([noise(2.0), noise(1.0, seed=1)])
    assert [f.shape[1] for f in frames] == [32, 32]
    assert abs(frames[0].shape[0] - 2 * rate) <= 1 and abs(frames[1].shape[0] - rate) <= 1
    units = assigner(frames[0])
    assert int(units.min()) >= 0 and int(units.max()) < 20


def test_hubert_layer_is_the_full_models_hidden_state(hubert_dir):
    from transformers import HubertModel

    audio = noise(1.0)
    full = HubertModel.from_pretrained(hubert_dir).eval()
    with torch.no_grad():
        expected = full(torch.from_numpy(audio)[None], output_hidden_states=True).hidden_states[2][0]
    assert torch.allclose(HubertFeatures(hubert_dir, layer=2)([audio])[0], expected, atol=1e-5)
    with pytest.raises(ConfigError, match="layer 4 is outside the 3 layers"):
        HubertFeatures(hubert_dir, layer=4)


# Receptive field of HuBERT base's stack, kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2), by hand: layer i
# widens it by (kᵢ - 1) × the hop before it, 10 + 2·5 + 2·10 + 2·20 + 2·40 + 1·80 + 1·160 = 400 samples (25 ms).
# With one more (2, 2) layer (the tiny 25 Hz stack has kernels 10,3,3,3,3,3,2,2): 10 + 2·(5+10+20+40+80) + 160 + 320.
HUBERT_BASE_MIN_SAMPLES = 400
TINY_25HZ_MIN_SAMPLES = 800


@pytest.mark.parametrize(
    "norm, strides, expected",
    [("group", BASE_STRIDES, HUBERT_BASE_MIN_SAMPLES), ("layer", BASE_STRIDES, HUBERT_BASE_MIN_SAMPLES),
     ("group", (*BASE_STRIDES, 2), TINY_25HZ_MIN_SAMPLES)],
)  # fmt: skip
def test_min_samples_is_the_shortest_input_the_model_accepts(tmp_path, norm, strides, expected):
    from transformers import HubertModel

    folder = tiny_hubert(tmp_path / "h", strides, norm)
    extractor = HubertFeatures(folder, layer=2)
    assert receptive_field(extractor.kernels, extractor.strides) == extractor.min_samples == expected
    model = HubertModel.from_pretrained(folder).eval()
    audio = torch.from_numpy(noise(0.1))[None]
    with torch.no_grad():
        assert model(audio[:, :expected]).last_hidden_state.shape[1] == 1
        with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
            model(audio[:, : expected - 1])
    # The extractor gives no frame rather than the model's error, alone or next to a longer waveform, which it leaves
    # as it would be alone (a layer-norm model batches the two).
    long = noise(0.5)
    short, edge = extractor([long[: expected - 1], long[:expected]])
    assert short.shape == (0, 32) and edge.shape == (1, 32)
    assert extractor([long[:80]])[0].shape == (0, 32)
    short, next_to_short = extractor([long[:80], long])
    assert short.shape == (0, 32) and torch.equal(next_to_short, extractor([long])[0])


def test_minimum_length_at_the_files_own_rate_matches_the_resampler(tmp_path):
    # read_audio resamples to ceil(n · 16000 / rate) samples: 1198 / 3 → 400, 1197 / 3 → 399 at 48 kHz;
    # 550 · 320 / 441 = 399.1 → 400, 549 → 398.4 → 399 at 22.05 kHz.
    for rate, fewest in ((48000, 1198), (22050, 550), (16000, 400)):
        assert samples_before_resampling(400, rate) == fewest
        for n, resampled in ((fewest, 400), (fewest - 1, 399)):
            audio, file_rate = read_audio(write_wav(tmp_path / f"{rate}-{n}.wav", noise(0.1, rate=rate)[:n], rate))
            assert file_rate == rate and len(audio) == resampled


def test_mfcc_on_a_tone_and_a_chirp():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    chirp = np.sin(2 * np.pi * (200 + 3000 * t) * t).astype(np.float32)
    mfcc = MFCCFeatures()
    tone_frames, chirp_frames = mfcc([tone, chirp])
    assert tone_frames.shape == (49, 39) and chirp_frames.shape == (49, 39)  # 50 frames/s, 13 MFCC + Δ + ΔΔ
    assert torch.isfinite(chirp_frames).all()

    # A steady tone barely changes from frame to frame; a chirp keeps moving.
    def drift(frames):
        return (frames[1:, :13] - frames[:-1, :13]).norm(dim=1)[2:-2].mean()

    assert drift(chirp_frames) > 5 * drift(tone_frames)
    # Two clusters split tone frames from noise frames.
    both = torch.cat(mfcc([np.concatenate([tone, noise(1.0)])]))
    centroids = fit_kmeans(both, 2, steps=30, init_sample=200)
    units = NearestCentroid(centroids)(both)
    assert len(set(units[5:40].tolist())) == 1 and len(set(units[55:90].tolist())) == 1
    assert units[20] != units[70]


def test_audio_is_resampled_and_mixed_to_mono(tmp_path):
    stereo = np.stack([noise(0.5, rate=22050), noise(0.5, seed=1, rate=22050)], axis=1)
    audio, rate = read_audio(write_wav(tmp_path / "a.wav", stereo, rate=22050))
    assert rate == 22050 and audio.ndim == 1 and abs(len(audio) - 8000) <= 1


# -- k-means ----------------------------------------------------------------------------------------------------------
def test_fit_reduces_inertia():
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 6, generator=generator) * 5
    frames = centers[torch.randint(0, 8, (4000,), generator=generator)] + torch.randn(4000, 6, generator=generator)
    random_pick = frames[torch.randperm(4000, generator=generator)[:8]]
    fitted = fit_kmeans(frames, 8, steps=100, batch_size=1000)
    assert inertia(frames, fitted) < 0.5 * inertia(frames, random_pick)
    assert inertia(frames, fitted) < 1.3 * 6  # near the noise floor: unit variance in 6 dimensions


def test_pickle_refused_without_opt_in_and_converted_with_it(tmp_path):
    joblib = pytest.importorskip("joblib")
    from sklearn.cluster import KMeans

    features = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
    model = KMeans(n_clusters=10, n_init=1, random_state=0).fit(features)
    path = str(tmp_path / "km10.bin")
    joblib.dump(model, path)
    with pytest.raises(ConfigError, match="is a pickle, and loading a pickle runs code: set allow_pickle_kmeans"):
        load_centroids(path)
    centroids = load_centroids(path, allow_pickle=True)
    assert (tmp_path / "km10.safetensors").exists()
    assert NearestCentroid(centroids)(torch.from_numpy(features)).tolist() == model.predict(features).tolist()
    assert torch.equal(load_centroids(path), centroids)  # later runs use the conversion, no opt-in needed


# -- the run ----------------------------------------------------------------------------------------------------------
def make_wavs(folder):
    for i in range(5):
        write_wav(folder / "speaker" / f"utt{i}.wav", noise(0.5 + 0.25 * i, seed=i))
    write_wav(folder / "empty.wav", np.zeros(0, dtype=np.float32))
    (folder / "broken.wav").write_bytes(b"not audio at all")
    return folder


def test_the_kmeans_sample_stops_at_its_hours_skips_bad_files_and_follows_the_seed(tmp_path):
    """`sample_features` (what recipes/fit_kmeans.py fits on): recordings are drawn in a seeded order until the audio
    reaches `hours`; the broken and empty files are skipped; with too few hours it still takes one recording."""
    from slam_recipes.audio.features import MFCCFeatures
    from slam_recipes.audio.tokenizer import sample_features

    wavs = make_wavs(tmp_path / "wavs")
    extractor = MFCCFeatures()
    every, count = sample_features(str(wavs), extractor, hours=1.0, seed=0)
    assert count == 5  # 5 readable files of 0.5-1.5 s: 3.75 s in all, under the hour
    one, count_one = sample_features(str(wavs), extractor, hours=1e-6, seed=0)
    assert count_one == 1 and 0 < len(one) < len(every)
    again, _ = sample_features(str(wavs), extractor, hours=1e-6, seed=0)
    assert torch.equal(one, again)
    firsts = {len(sample_features(str(wavs), extractor, hours=1e-6, seed=seed)[0]) for seed in range(8)}
    assert len(firsts) > 1  # the seed picks which recording comes first (the 5 files have 5 lengths)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.wav").write_bytes(b"not audio at all")
    with pytest.raises(DataError, match="no readable audio to fit the k-means on"):
        sample_features(str(tmp_path / "bad"), extractor, hours=1.0)


def test_tokenize_skips_bad_audio_dedups_and_resumes(tmp_path, hubert_dir):
    wavs = make_wavs(tmp_path / "wavs")
    extractor, assigner = HubertFeatures(hubert_dir, layer=2), NearestCentroid(torch.randn(20, 32))
    out = tmp_path / "units"
    summary = tokenize_audio(str(wavs), str(out), extractor, assigner, shard_size=2, keep_durations=True)
    assert summary["shards_written"] == 4 and summary["files"] == 5 and summary["skipped_files"] == 2
    skipped = write_report(str(out))
    assert sorted(s["file"] for s in skipped) == ["broken.wav", "empty.wav"]
    assert "zero-length audio" in " ".join(s["error"] for s in skipped)

    from datasets import load_dataset

    units = load_dataset(str(out), split="train")
    assert sorted(units["file"]) == [f"speaker/utt{i}.wav" for i in range(5)]
    for row in units:
        sequence = np.asarray(row["units"])
        assert (sequence[1:] != sequence[:-1]).all() and sequence.max() < 20  # deduplicated, in range
        seconds = 0.5 + 0.25 * int(row["file"][-5])
        assert abs(sum(row["duration"]) - 50 * seconds) <= 1  # run lengths add up to the 50 frames/s

    # Resume: only the shard whose done-marker is gone is computed again, with the same result.
    before = {r["file"]: r["units"] for r in units}
    os.remove(out / "report" / "shard-00001.json")
    os.remove(out / "data" / "train-00001.parquet")
    again = tokenize_audio(str(wavs), str(out), extractor, assigner, shard_size=2, keep_durations=True)
    assert again["shards_written"] == 1 and again["shards_skipped"] == 3
    after = load_dataset(str(out), split="train", download_mode="force_redownload")
    assert {r["file"]: r["units"] for r in after} == before


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_audio_shorter_than_the_receptive_field_is_skipped_and_reported(tmp_path, norm):
    """An 80-sample clip and one of 399 (HuBERT base's 400 less one, also as 1197 samples at 48 kHz) among good
    files: the run goes on, the good files get the units they get alone, the report gives lengths and minimum; the
    same whether each file is a batch of its own or all share one padded forward pass (layer norm batches)."""
    extractor = HubertFeatures(tiny_hubert(tmp_path / "h", norm=norm), layer=2)
    assigner = NearestCentroid(torch.randn(20, 32, generator=torch.Generator().manual_seed(0)))
    good = {"a.wav": noise(0.5), "b.wav": noise(1.0, seed=1), "edge.wav": noise(0.1, seed=2)[:400]}
    hi_rate_ok = noise(0.1, seed=3, rate=48000)[:1198]  # resampled to 400
    short = {"tiny.wav": noise(0.1, seed=4)[:80], "min-1.wav": noise(0.1, seed=5)[:399]}
    for name, audio in good.items():
        for folder in ("good", "mixed"):
            write_wav(tmp_path / folder / name, audio)
    for folder in ("good", "mixed"):
        write_wav(tmp_path / folder / "hi-rate-ok.wav", hi_rate_ok, rate=48000)
    for name, audio in short.items():
        write_wav(tmp_path / "mixed" / name, audio)
    write_wav(tmp_path / "mixed" / "hi-rate.wav", noise(0.1, seed=6, rate=48000)[:1197], rate=48000)  # → 399

    from datasets import load_dataset

    for shard_size in (1, 10):  # every file alone, or all seven in one shard and (layer norm) one batch
        units = {}
        for folder in ("good", "mixed"):
            out = tmp_path / f"{folder}-{shard_size}"
            summary = tokenize_audio(str(tmp_path / folder), str(out), extractor, assigner, shard_size=shard_size,
                                     keep_durations=True, disable_progress=True)  # fmt: skip
            assert summary["files"] == 4
            rows = load_dataset(str(out), split="train")
            units[folder] = {r["file"]: (r["units"], r["duration"]) for r in rows}
        assert units["mixed"] == units["good"]
        assert sum(units["mixed"]["edge.wav"][1]) == 1 and sum(units["mixed"]["hi-rate-ok.wav"][1]) == 1
        mixed = tmp_path / f"mixed-{shard_size}"
        report = {r["file"]: r for r in write_report(str(mixed))}
        assert sorted(report) == ["hi-rate.wav", "min-1.wav", "tiny.wav"]
        for name, samples, seconds in (("tiny.wav", 80, 0.005), ("min-1.wav", 399, 0.0249375),
                                       ("hi-rate.wav", 399, 0.0249375)):  # fmt: skip
            entry = report[name]
            assert (entry["samples"], entry["seconds"]) == (samples, seconds)
            assert (entry["min_samples"], entry["min_seconds"]) == (HUBERT_BASE_MIN_SAMPLES, 0.025)
            assert f"{samples} samples" in entry["error"] and "needs 400" in entry["error"]
        assert (report["hi-rate.wav"]["file_rate"], report["hi-rate.wav"]["file_min_samples"]) == (48000, 1198)
        assert "file_rate" not in report["tiny.wav"]
        lines = (mixed / "tokenize_report.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["file"] for line in lines) == sorted(report)


def test_preference_audio_is_tokenised_column_by_column(tmp_path):
    from datasets import Audio, Dataset

    from slam_recipes.preference.pairs import build_preference_datasets

    paths = {c: [write_wav(tmp_path / "a" / f"{c}{i}.wav", noise(0.4, seed=i + k)) for i in range(3)]
             for k, c in enumerate(("prompt", "chosen", "rejected"))}  # fmt: skip
    dataset = Dataset.from_dict({**paths, "prompt_text": ["a b", "c d", "e f"], "chosen_text": ["x y"] * 3,
                                 "rejected_text": ["z w"] * 3})  # fmt: skip
    for column in paths:
        dataset = dataset.cast_column(column, Audio())
    dataset.save_to_disk(tmp_path / "swag")
    rows, columns, total = open_audio_source(str(tmp_path / "swag"))
    assert columns == ["prompt", "chosen", "rejected"] and total == 3
    mfcc = MFCCFeatures()
    out = tmp_path / "units"
    tokenize_audio(str(tmp_path / "swag"), str(out), mfcc, NearestCentroid(torch.randn(500, 39)))
    train, _ = build_preference_datasets([str(out)], num_units=500, auto_bleu_filter=True)
    assert len(train) == 3 and train[0]["prompt"].startswith("<S><Un")


def test_streamed_parquet_dataset_gives_the_same_units(tmp_path):
    """A Hub-style parquet audio dataset (embedded bytes) read with streaming=True tokenises like the loaded one."""
    from datasets import Audio, Dataset, load_dataset

    paths = [write_wav(tmp_path / "a" / f"w{i}.wav", noise(0.3 + 0.1 * i, seed=i)) for i in range(5)]
    dataset = Dataset.from_dict({"audio": paths, "text": [f"t{i}" for i in range(5)]}).cast_column("audio", Audio())
    (tmp_path / "hub" / "data").mkdir(parents=True)
    dataset.to_parquet(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    assigner = NearestCentroid(torch.randn(50, 39))
    units = {}
    for streaming in (False, True):
        out = tmp_path / f"units-{streaming}"
        summary = tokenize_audio(str(tmp_path / "hub"), str(out), MFCCFeatures(), assigner, streaming=streaming,
                                 shard_size=2)  # fmt: skip
        assert summary["files"] == 5 and summary["shards_written"] == 3
        units[streaming] = load_dataset(str(out), split="train").sort("text")
    assert units[True]["units"] == units[False]["units"] and units[True]["text"] == [f"t{i}" for i in range(5)]


def run(script, *args):
    return run_recipe(script, *args)


def test_fit_then_tokenize_recipes_mfcc_offline(tmp_path):
    wavs = make_wavs(tmp_path / "wavs")
    km = tmp_path / "km" / "mfcc16.safetensors"
    result = run(FIT, "--backend", "mfcc", "--dataset_name", str(wavs), "--num_clusters", "16", "--kmeans_path", str(km),
                 "--kmeans_steps", "20", "--kmeans_batch_size", "200")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_centroids(str(km)).shape == (16, 39) and "inertia" in result.stdout
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(km).st_mode & 0o777 == 0o666 & ~umask  # readable by whoever reads the other outputs
    # a fitted k-means is not replaced by accident, nor saved under a name it would be read back wrongly by
    fitted = km.read_bytes()
    for path, message in ((km, "exists; choose another path or pass --overwrite_kmeans true"),
                          (tmp_path / "km" / "k.txt", "fitted centroids are saved as .safetensors; name the file so")):  # fmt: skip
        again = run(FIT, "--backend", "mfcc", "--dataset_name", str(wavs), "--num_clusters", "4",
                    "--kmeans_path", str(path))  # fmt: skip
        assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].endswith(message), again.stderr
    assert km.read_bytes() == fitted and not (tmp_path / "km" / "k.txt").exists()
    out = tmp_path / "units"
    args = ["--backend", "mfcc", "--dataset_name", str(wavs), "--kmeans_path", str(km), "--output_dir", str(out)]
    result = run(TOKENIZE, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5 files" in result.stdout and "2 files skipped" in result.stdout
    report = [json.loads(line) for line in (out / "tokenize_report.jsonl").read_text().splitlines()]
    assert {r["file"] for r in report} == {"broken.wav", "empty.wav"}

    from slam_recipes.data.sources import build_pretraining_datasets

    train, _ = build_pretraining_datasets([str(out)], num_units=16, context_length=1024, packing="none")
    assert len(train) == 5
    # a rerun with other settings into the same folder is refused
    other = run(TOKENIZE, *args[:-2], "--output_dir", str(out), "--dedup", "false")
    assert other.returncode == 2 and "holds a tokenisation with other settings (dedup)" in other.stderr


def test_two_processes_share_the_shards(tmp_path):
    wavs = make_wavs(tmp_path / "wavs")
    km = tmp_path / "km.safetensors"
    save_centroids(str(km), torch.randn(16, 39))
    out = tmp_path / "units"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", TOKENIZE, "--backend", "mfcc",
               "--dataset_name", str(wavs), "--kmeans_path", str(km), "--output_dir", str(out), "--shard_size", "2"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    written = sorted(line.split(":")[0] + ":" + line.split(":")[1].split(",")[0] for line in result.stdout.splitlines()
                     if line.startswith("process"))  # fmt: skip
    assert written == ["process 0: 2 shards written", "process 1: 2 shards written"]  # shards 0, 2 and 1, 3
    assert len(os.listdir(out / "report")) == 4 and (out / "tokenize_report.jsonl").read_text().count("\n") == 2
    assert len(os.listdir(out / "data")) == 3  # shard 0 held only the two bad files: done, with no rows


@pytest.mark.parametrize("case", ["dimension", "pickle"])
def test_tokenize_bad_kmeans_one_line_exit_2(tmp_path, hubert_dir, case):
    wavs = make_wavs(tmp_path / "wavs")
    if case == "dimension":
        km = tmp_path / "km.safetensors"
        save_centroids(str(km), torch.randn(10, 7))
        args, message = (
            ["--backend", "hubert", "--feature_model", hubert_dir, "--layer", "2"],
            ("k-means dimension 7 differs from the 32-dimensional features of hubert"),
        )
    else:
        km = tmp_path / "km.bin"
        km.write_bytes(b"\x80\x04K\x01.")  # a pickle; never loaded without the opt-in
        args, message = ["--backend", "mfcc"], "is a pickle, and loading a pickle runs code"
    out = tmp_path / "units"
    result = run(TOKENIZE, *args, "--dataset_name", str(wavs), "--kmeans_path", str(km), "--output_dir", str(out))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (out / "data").exists()


def test_a_bad_audio_source_writes_nothing(tmp_path):
    """The source is opened before the output folder is made: a wrong path leaves no settings file behind to refuse
    the corrected rerun. A single data file is read by its type; one without audio says so; audio files have one
    audio column, so another name is an error, not ignored."""
    km = tmp_path / "km.safetensors"
    save_centroids(str(km), torch.randn(16, 39))
    out = tmp_path / "units"
    args = ["--backend", "mfcc", "--kmeans_path", str(km), "--output_dir", str(out)]
    result = run(TOKENIZE, *args, "--dataset_name", str(tmp_path / "nowhere"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and str(tmp_path / "nowhere") in errors[0], result.stderr
    assert not out.exists()

    table = tmp_path / "texts.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"], "text": ["no audio here"]}), str(table))
    with pytest.raises(DataError, match=r"texts.parquet: no audio column \(columns: \['id', 'text'\]\)"):
        open_audio_source(str(table))
    wavs = make_wavs(tmp_path / "wavs")
    with pytest.raises(ConfigError, match=r"audio files have one audio column, 'audio'; audio_columns \['speech'\]"):
        open_audio_source(str(wavs), audio_columns=["speech"])
    assert open_audio_source(str(wavs), audio_columns=["audio"])[1] == ["audio"]


def test_mfcc_frame_rate():
    from slam_recipes.errors import ConfigError

    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    for rate in (50, 25):
        mfcc = MFCCFeatures(frame_rate=rate)
        (features,) = mfcc([audio])
        assert features.shape == (mfcc.num_frames(16000), 39) and abs(features.shape[0] - rate) <= 1
    assert MFCCFeatures(frame_rate=25).window == 640  # no sample between two frames is skipped
    with pytest.raises(ConfigError, match="mfcc_frame_rate must divide 16000, got 30"):
        MFCCFeatures(frame_rate=30)
