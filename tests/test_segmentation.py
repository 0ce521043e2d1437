"""Real speech in: span reading at any rate, long recordings cut into segments (silero-vad or fixed windows) with
memory that does not grow with the file, frames that add up, the MFCC path on real LibriVox clips, other audio
formats, and the paper tokeniser's frame counts (352 and 398) for ../shared/realdata.

The clips under tests/data/librivox are public-domain LibriVox read speech (see the README there)."""

import glob
import io
import json
import os

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO
from scipy.signal import resample_poly

from slam_recipes.audio.features import SAMPLE_RATE, AudioReader, HubertFeatures, MFCCFeatures, read_audio
from slam_recipes.audio.kmeans import NearestCentroid, fit_kmeans
from slam_recipes.audio.segmentation import Segmenter, fixed_segments, join_spans, vad_segments
from slam_recipes.audio.tokenizer import tokenize_rows
from slam_recipes.errors import ConfigError

CLIPS = sorted(glob.glob(os.path.join(REPO, "tests", "data", "librivox", "*.flac")))
REALDATA = os.path.join(REPO, "..", "shared", "realdata", "slamkit-example")
# mHuBERT-25Hz's convolutions, fairseq's conv_feature_layers [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 3:
# HuBERT base's stack with one more kernel-2 stride-2 layer (the model card: "an additional convolutional layer ...
# with the stride 2, resulting in features of 25Hz"; textlesslib registers it with a 640-sample hop).
MHUBERT_25HZ_KERNELS = (10, 3, 3, 3, 3, 2, 2, 2)
MHUBERT_25HZ_STRIDES = (5, 2, 2, 2, 2, 2, 2, 2)


def clip(i=0) -> np.ndarray:
    return soundfile.read(CLIPS[i], dtype="float32")[0]


def encode(audio, rate, fmt="WAV", subtype="PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def speech_with_pauses(pause_seconds, order=(0, 1, 2)):
    """The clips in `order` with `pause_seconds` of digital silence before each: (audio, [(start, stop)] of each
    clip in samples)."""
    pieces, spans, at = [], [], 0
    for i in order:
        pause, speech = np.zeros(int(pause_seconds * SAMPLE_RATE), np.float32), clip(i)
        pieces += [pause, speech]
        spans.append((at + len(pause), at + len(pause) + len(speech)))
        at += len(pause) + len(speech)
    return np.concatenate(pieces), spans


@pytest.fixture(scope="module")
def clip_units():
    """MFCC (25 Hz) features of the clips and 50 centroids fitted on them: units that mean something."""
    extractor = MFCCFeatures(frame_rate=25)
    centroids = fit_kmeans(torch.cat(extractor([clip(i) for i in range(len(CLIPS))])), 50, steps=100, seed=0)
    return extractor, NearestCentroid(centroids)


# -- reading spans ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [16000, 8000, 22050, 44100, 48000])
def test_a_span_is_exactly_that_part_of_the_whole_file_resampled(rate):
    """Read by spans, a file gives the samples that scipy's polyphase resampling of the whole file gives, bit for
    bit; so cutting a file never shifts, loses or adds a sample. Stereo is averaged."""
    left = resample_poly(clip(0), rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else clip(0)
    stereo = np.stack([left, 0.5 * left], axis=1)
    data = encode(stereo, rate, subtype="FLOAT")
    divisor = np.gcd(rate, SAMPLE_RATE)
    whole = resample_poly(stereo.mean(axis=1), SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    reader = AudioReader(data)
    assert reader.rate == rate and reader.num_samples == len(whole)
    assert np.array_equal(reader.read(), whole) and np.array_equal(read_audio(data)[0], whole)
    n = len(whole)
    for start, stop in ((0, 1000), (12345, 40000), (n // 2, n), (n - 7, n), (3, 5)):
        assert np.array_equal(reader.read(start, stop), whole[start:stop]), (start, stop)


def test_a_reader_refuses_what_it_cannot_read(tmp_path):
    from slam_recipes.errors import DataError

    with pytest.raises(DataError, match="broken.wav: unreadable audio"):
        (tmp_path / "broken.wav").write_bytes(b"not audio")
        AudioReader(str(tmp_path / "broken.wav"))
    with pytest.raises(DataError, match="zero-length audio"):
        AudioReader(encode(np.zeros(0, np.float32), SAMPLE_RATE))
    with pytest.raises(DataError, match="neither bytes nor a path"):
        AudioReader({"bytes": None, "path": None})


# -- cutting ----------------------------------------------------------------------------------------------------------
def test_join_spans():
    # Joined while first start → last stop fits in 10 samples; 3-14 is 11; a 25-sample span becomes 9 + 8 + 8.
    assert join_spans([(0, 2), (3, 6), (8, 10), (12, 14)], 10) == [(0, 10), (12, 14)]
    assert join_spans([(3, 6), (8, 14)], 10) == [(3, 6), (8, 14)]
    assert join_spans([(0, 25)], 10) == [(0, 8), (8, 16), (16, 25)]
    assert join_spans([], 10) == []


@pytest.mark.parametrize("hop, window", [(320, 400), (640, 720), (640, 640)])  # HuBERT base, mHuBERT-25Hz, MFCC 25 Hz
def test_fixed_windows_keep_each_frame_of_the_file_once(hop, window):
    for num_samples in (window, 5 * SAMPLE_RATE + 17, 61 * SAMPLE_RATE, 600 * SAMPLE_RATE + 639):
        total = (num_samples - window) // hop + 1
        segments = fixed_segments(num_samples, hop, window, max_segment_seconds=4.0, context_seconds=0.5)
        kept = []
        for s in segments:
            fed = (s.stop - s.start - window) // hop + 1
            assert s.start % hop == 0 and 0 <= s.start < s.stop <= num_samples
            assert s.stop - s.start <= 4.0 * SAMPLE_RATE and 0 <= s.keep_start < s.keep_stop <= fed
            kept += range(s.start // hop + s.keep_start, s.start // hop + s.keep_stop)
        assert kept == list(range(total))
        assert segments[0].begin == 0 and segments[-1].end == num_samples / SAMPLE_RATE
    with pytest.raises(ConfigError, match="leaves no frame to keep"):
        fixed_segments(10 * SAMPLE_RATE, 640, 720, max_segment_seconds=2.0, context_seconds=1.0)


def test_fixed_windows_give_a_convolution_stack_the_whole_files_features():
    """Where the model's receptive field lies inside a window and its context (a stack of convolutions normalised
    per frame), the kept frames' features equal the whole file's: a second code path, the stack run once."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(
        conv_dim=(8,) * 8, conv_kernel=MHUBERT_25HZ_KERNELS, conv_stride=MHUBERT_25HZ_STRIDES,
        feat_extract_norm="layer", hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
    )  # fmt: skip
    torch.manual_seed(0)
    convolutions = HubertModel(config).feature_extractor.eval()
    audio, _ = speech_with_pauses(0.5)
    with torch.no_grad():
        whole = convolutions(torch.from_numpy(audio)[None])[0].T
        pieces = []
        for s in fixed_segments(len(audio), 640, 720, max_segment_seconds=3.0, context_seconds=0.1):
            features = convolutions(torch.from_numpy(audio[s.start : s.stop])[None])[0].T
            pieces.append(features[s.keep_start : s.keep_stop])
    assert torch.allclose(torch.cat(pieces), whole, atol=1e-5)


def test_the_vad_cuts_real_speech_at_its_pauses():
    """Three real clips (7.1, 3.0 and 3.3 s), each after 2 s of silence, cut with at most 8 s per segment: segments
    are in order, inside the file and within 8 s; each clip lies in one segment, which holds at least 90 % of it (the
    detector may leave out a breath at its edges); no segment is only silence; most of the silence is left out."""
    audio, clips = speech_with_pauses(2.0)
    reader = AudioReader(encode(audio, SAMPLE_RATE))
    segments = vad_segments(reader, max_segment_seconds=8.0)
    spans = [(s.start, s.stop) for s in segments]
    assert all(a < b <= c < d for (a, b), (c, d) in zip(spans, spans[1:], strict=False)) and spans[-1][1] <= len(audio)
    assert all(s.start >= 0 and s.stop - s.start <= 8 * SAMPLE_RATE for s in segments)
    assert all(s.begin == s.start / SAMPLE_RATE and s.end == s.stop / SAMPLE_RATE for s in segments)

    def overlap(a, b, start, stop):
        return max(0, min(b, stop) - max(a, start))

    for a, b in clips:
        touching = [(start, stop) for start, stop in spans if overlap(a, b, start, stop)]
        assert len(touching) == 1 and overlap(a, b, *touching[0]) >= 0.9 * (b - a), (a, b, spans)
    assert all(any(overlap(a, b, start, stop) for a, b in clips) for start, stop in spans)
    assert sum(b - a for a, b in spans) < len(audio) - 4 * SAMPLE_RATE
    # A file with no speech gives no segment.
    assert vad_segments(AudioReader(encode(np.zeros(20 * SAMPLE_RATE, np.float32), SAMPLE_RATE)), 8.0) == []


@pytest.mark.parametrize("method", ["vad", "fixed"])
def test_a_long_recording_becomes_one_row_per_segment_and_its_frames_add_up(clip_units, method):
    """Each segment is a row with its file, start and end; each row's durations add up to the frames of its span.
    Fixed windows keep all of the file's frames, (n - 640) // 640 + 1; the VAD's rows keep those of its speech
    segments, and the left-out silence accounts for the rest. A short file next to it stays one row."""
    extractor, assigner = clip_units
    audio, _ = speech_with_pauses(2.0, order=(0, 1, 2, 0, 1))
    long, short = encode(audio, SAMPLE_RATE), encode(clip(1), SAMPLE_RATE)
    rows = [{"audio": {"bytes": long, "path": "long.wav"}, "id": 7}, {"audio": short, "file": "short.wav", "id": 8}]
    segmenter = Segmenter(method, 10.0, hop=extractor.hop, window=extractor.window, context_seconds=0.5)
    out, skipped, seconds = tokenize_rows(
        rows, ["audio"], extractor, assigner, keep_durations=True, segmenter=segmenter
    )
    assert skipped == [] and seconds == (len(audio) + len(clip(1))) / SAMPLE_RATE
    long_rows = [r for r in out if r["file"] == "long.wav"]
    assert len(long_rows) >= 3 and all(r["id"] == 7 for r in long_rows)
    assert out[-1]["file"] == "short.wav" and (out[-1]["start"], out[-1]["end"]) == (0.0, len(clip(1)) / SAMPLE_RATE)
    assert int(out[-1]["duration"].sum()) == extractor.num_frames(len(clip(1)))
    for row in out:
        assert np.all(row["units"][1:] != row["units"][:-1]) and len(row["units"]) == len(row["duration"])
    frames = [int(r["duration"].sum()) for r in long_rows]
    if method == "fixed":
        assert sum(frames) == extractor.num_frames(len(audio))
        assert [r["start"] for r in long_rows] == sorted(r["start"] for r in long_rows)
        assert long_rows[-1]["end"] == len(audio) / SAMPLE_RATE
    else:
        spans = [(round(r["start"] * SAMPLE_RATE), round(r["end"] * SAMPLE_RATE)) for r in long_rows]
        assert frames == [extractor.num_frames(b - a) for a, b in spans]
        left_out = len(audio) - sum(b - a for a, b in spans)
        assert left_out > 0 and sum(frames) < extractor.num_frames(len(audio))
        # The units of a segment are those of its audio tokenised alone.
        a, b = spans[0]
        alone, _, _ = tokenize_rows([{"audio": encode(audio[a:b], SAMPLE_RATE)}], ["audio"], extractor, assigner)
        assert np.array_equal(alone[0]["units"], long_rows[0]["units"])


def test_segmentation_needs_one_audio_column(clip_units):
    extractor, assigner = clip_units
    segmenter = Segmenter("fixed", 10.0, hop=extractor.hop, window=extractor.window)
    with pytest.raises(ConfigError, match="segmentation needs one audio column"):
        tokenize_rows([{"a": CLIPS[0], "b": CLIPS[1]}], ["a", "b"], extractor, assigner, segmenter=segmenter)


def test_a_recording_without_speech_is_skipped_and_reported(clip_units):
    extractor, assigner = clip_units
    silence = encode(np.zeros(12 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    segmenter = Segmenter("vad", 10.0, hop=extractor.hop, window=extractor.window)
    out, skipped, _ = tokenize_rows([{"audio": silence, "file": "quiet.wav"}], ["audio"], extractor, assigner,
                                    segmenter=segmenter)  # fmt: skip
    error = "quiet.wav: no speech found by the voice-activity detector"
    assert out == [] and skipped == [{"file": "quiet.wav", "error": error}]


@pytest.mark.parametrize("method", ["vad", "fixed"])
def test_the_tokenize_recipe_cuts_long_files_into_rows_pretraining_reads(tmp_path, method):
    """recipes/tokenize_audio.py on a folder with a 40 s recording and a short clip, at most 15 s per segment: the
    long file becomes several rows with start / end, the short one stays one; pretraining reads every row."""
    from conftest import run_recipe

    from slam_recipes.audio.kmeans import save_centroids
    from slam_recipes.data.sources import build_pretraining_datasets

    audio, _ = speech_with_pauses(1.0, order=(0, 1, 2, 0, 1, 2, 0))
    (tmp_path / "wavs").mkdir()
    soundfile.write(tmp_path / "wavs" / "book.flac", audio, SAMPLE_RATE)
    soundfile.write(tmp_path / "wavs" / "short.wav", clip(1), SAMPLE_RATE)
    km, out = tmp_path / "km.safetensors", tmp_path / "units"
    save_centroids(str(km), torch.randn(16, 39, generator=torch.Generator().manual_seed(0)))
    args = ["--backend", "mfcc", "--mfcc_frame_rate", "25", "--kmeans_path", str(km), "--dataset_name",
            str(tmp_path / "wavs"), "--output_dir", str(out), "--max_segment_seconds", "15", "--segmentation", method,
            "--keep_durations", "true"]  # fmt: skip
    result = run_recipe(os.path.join(REPO, "recipes", "tokenize_audio.py"), *args)
    assert result.returncode == 0, result.stderr[-2000:]
    from datasets import load_dataset

    rows = load_dataset(str(out), split="train")
    book = [r for r in rows if r["file"] == "book.flac"]
    assert len(book) >= 3 and all(r["end"] - r["start"] <= 15 for r in book)
    assert [r for r in rows if r["file"] == "short.wav"][0]["start"] == 0.0
    assert f"2 files ({len(rows)} rows)" in result.stdout
    train, _ = build_pretraining_datasets([str(out)], num_units=16, context_length=1024, packing="none")
    assert len(train) == len(rows)


@pytest.mark.parametrize(
    "args, message",
    [(["--segmentation", "words"], "segmentation must be vad or fixed, got 'words'"),
     (["--segmentation", "fixed", "--max_segment_seconds", "1", "--segment_context_seconds", "1"],
      "max_segment_seconds 1.0 leaves no frame to keep"),
     (["--max_segment_seconds", "nan"], "max_segment_seconds must be positive seconds or null, got nan"),
     (["--segment_context_seconds", "inf"], "segment_context_seconds must be seconds >= 0, got inf"),
     (["--vad_threshold", "1.5"], "vad_threshold must be between 0 and 1, got 1.5")],
)  # fmt: skip
def test_bad_segmentation_settings_are_one_line_errors_before_anything_is_written(tmp_path, args, message):
    from conftest import run_recipe

    from slam_recipes.audio.kmeans import save_centroids

    km, out = tmp_path / "km.safetensors", tmp_path / "units"
    save_centroids(str(km), torch.randn(16, 39))
    result = run_recipe(os.path.join(REPO, "recipes", "tokenize_audio.py"), "--backend", "mfcc", "--kmeans_path",
                        str(km), "--dataset_name", CLIPS[0], "--output_dir", str(out), *args)  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not out.exists()


def test_a_truncated_file_is_skipped_and_reported(tmp_path, clip_units):
    """A file whose stream ends before its header says (an MP3 cut to 90 % of its bytes) is skipped with the reason,
    not tokenised short; the other rows are kept."""
    extractor, assigner = clip_units
    path = tmp_path / "cut.mp3"
    soundfile.write(path, np.tile(clip(0), 3), SAMPLE_RATE, format="MP3")
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.9)])
    out, skipped, _ = tokenize_rows([{"audio": str(path), "file": "cut.mp3"}, {"audio": CLIPS[1], "file": "ok.flac"}],
                                    ["audio"], extractor, assigner)  # fmt: skip
    assert [r["file"] for r in out] == ["ok.flac"]
    assert len(skipped) == 1 and skipped[0]["file"] == "cut.mp3" and "truncated" in skipped[0]["error"]


def test_a_cut_row_with_a_malformed_alignment_is_skipped_and_reported(clip_units):
    extractor, assigner = clip_units
    audio, _ = speech_with_pauses(2.0, order=(0, 1, 2, 0))
    bad = [{"word": "a", "start_time": 0.5}]  # no end_time
    good = [{"word": "b", "start_time": 3.0, "end_time": 3.4}]
    rows = [{"audio": encode(audio, SAMPLE_RATE), "file": "bad.wav", "aligned_text": bad},
            {"audio": encode(audio, SAMPLE_RATE), "file": "good.wav", "aligned_text": good}]  # fmt: skip
    segmenter = Segmenter("fixed", 10.0, hop=extractor.hop, window=extractor.window)
    out, skipped, _ = tokenize_rows(rows, ["audio"], extractor, assigner, segmenter=segmenter)
    assert {r["file"] for r in out} == {"good.wav"} and [s["file"] for s in skipped] == ["bad.wav"]
    assert "bad.wav aligned_text: expected a list of {word, start_time, end_time}" in skipped[0]["error"]
    assert sum(len(r["aligned_text"]) for r in out) == 1


def test_run_lengths_longer_than_uint16_are_kept():
    from slam_recipes.audio.tokenizer import to_units

    frames = torch.zeros(70_000, 39)  # 47 minutes of one unit at 25 Hz
    units, durations = to_units(frames, NearestCentroid(torch.randn(5, 39)), dedup=True)
    assert len(units) == 1 and durations.tolist() == [70_000]


def test_rerun_settings_overwrite_and_an_all_skipped_source(tmp_path):
    """Settings that do not apply (segmentation with max_segment_seconds null) do not block a resume; overwriting a
    run made with other settings removes its shards; a source whose every file is skipped is a one-line error."""
    from conftest import run_recipe

    from slam_recipes.audio.kmeans import save_centroids

    km, out = tmp_path / "km.safetensors", tmp_path / "units"
    save_centroids(str(km), torch.randn(16, 39))
    script = os.path.join(REPO, "recipes", "tokenize_audio.py")
    base = ["--backend", "mfcc", "--kmeans_path", str(km), "--dataset_name", os.path.dirname(CLIPS[0]), "--output_dir", str(out)]  # fmt: skip
    assert run_recipe(script, *base, "--max_segment_seconds", "null", "--shard_size", "1").returncode == 0
    assert len(os.listdir(out / "data")) == 3
    again = run_recipe(script, *base, "--max_segment_seconds", "null", "--shard_size", "1", "--segmentation", "fixed")
    assert again.returncode == 0 and "3 already done" in again.stdout
    replaced = run_recipe(script, *base, "--shard_size", "2", "--overwrite_output_dir", "true")
    assert replaced.returncode == 0 and sorted(os.listdir(out / "data")) == [
        "train-00000.parquet",
        "train-00001.parquet",
    ]
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    soundfile.write(quiet / "silence.wav", np.zeros(70 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    result = run_recipe(script, *base[:-4], "--dataset_name", str(quiet), "--output_dir", str(tmp_path / "q"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "no units written, every file was skipped" in errors[0]


# -- memory -----------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="reads peak memory from Linux's /proc")
@pytest.mark.slow  # 10 and 30 s: two fresh processes per method, and 10 minutes of VAD
@pytest.mark.parametrize("method", ["fixed", "vad"])
def test_memory_does_not_grow_with_the_recording(tmp_path, method):
    """A 10-minute and a 1-minute recording of real speech and pauses tokenise with peak memory within 10 % of each
    other (read in a fresh process; the whole 10-minute file as float32 alone is 38 MB, its MFCC spectra 60 MB more)."""
    from bench.sections import tokenize_peak_memory, write_long_recording

    short = tokenize_peak_memory(write_long_recording(str(tmp_path / "one.flac"), 1), method)
    long = tokenize_peak_memory(write_long_recording(str(tmp_path / "ten.flac"), 10), method)
    print(f"\n{method}: peak {short['peak_mb']:.1f} MB (1 min), {long['peak_mb']:.1f} MB (10 min); growth while "
          f"tokenising {short['growth_mb']:.1f} / {long['growth_mb']:.1f} MB; {long['rows']} segments")  # fmt: skip
    assert long["audio_seconds"] >= 600 and long["rows"] >= 20
    assert long["peak_mb"] <= 1.1 * short["peak_mb"]
    assert max(long["lengths"]) <= 30.0
    if method == "fixed":
        assert long["frames"] == long["file_frames"]


# -- real speech through the MFCC path --------------------------------------------------------------------------------
def test_mfcc_units_of_real_speech_are_deterministic_and_add_up(clip_units):
    """Tokenised twice, in one batch or one by one, the clips give the same units; durations add up to the frames of
    each clip, (n - 640) // 640 + 1 at 25 Hz; dedup leaves no repeat, and expanding the units by their durations gives
    the units without dedup."""
    extractor, assigner = clip_units
    rows = [{"audio": path} for path in CLIPS]
    batched, _, _ = tokenize_rows(rows, ["audio"], extractor, assigner, keep_durations=True)
    alone, _, _ = tokenize_rows(rows, ["audio"], extractor, assigner, keep_durations=True, max_batch_samples=1)
    frames, _, _ = tokenize_rows(rows, ["audio"], extractor, assigner, dedup=False)
    for one, other, full, path in zip(batched, alone, frames, CLIPS, strict=True):
        samples = soundfile.info(path).frames
        assert np.array_equal(one["units"], other["units"]) and np.array_equal(one["duration"], other["duration"])
        assert int(one["duration"].sum()) == len(full["units"]) == (samples - 640) // 640 + 1
        assert np.all(one["units"][1:] != one["units"][:-1])
        assert np.array_equal(np.repeat(one["units"], one["duration"]), full["units"])
        assert len(set(one["units"].tolist())) >= 10  # real speech visits many of the 50 units


# Formats. Lossless ones (WAV 16 / 24-bit, FLAC, stereo of one signal) give the 16 kHz mono file's units exactly;
# 44.1 / 48 kHz files made from it give its frame count exactly and its units to within 1 % of frames (measured:
# all equal); lossy Ogg Vorbis / Opus within 5 % (measured: 98.9-99.4 % equal with 50 or 100 centroids).
def _formats():
    yield "wav-16bit", lambda x: encode(x, SAMPLE_RATE), 1.0
    yield "wav-24bit", lambda x: encode(x, SAMPLE_RATE, subtype="PCM_24"), 1.0
    yield "flac-stereo", lambda x: encode(np.stack([x, x], 1), SAMPLE_RATE, "FLAC"), 1.0
    yield "flac-44.1k", lambda x: encode(resample_poly(x, 441, 160), 44100, "FLAC"), 0.99
    yield (
        "wav-48k-stereo-24bit",
        lambda x: encode(np.stack([resample_poly(x, 3, 1)] * 2, 1), 48000, "WAV", "PCM_24"),
        0.99,
    )
    if "VORBIS" in soundfile.available_subtypes("OGG"):
        yield "ogg-vorbis", lambda x: encode(x, SAMPLE_RATE, "OGG", "VORBIS"), 0.95
    if "OPUS" in soundfile.available_subtypes("OGG"):
        yield "ogg-opus-48k", lambda x: encode(resample_poly(x, 3, 1), 48000, "OGG", "OPUS"), 0.95


@pytest.mark.parametrize("name, make, agreement", list(_formats()), ids=[f[0] for f in _formats()])
def test_other_formats_give_the_16k_mono_units(clip_units, name, make, agreement):
    extractor, assigner = clip_units
    reference = clip(0)
    expected = assigner(extractor([reference])[0])
    units = assigner(extractor([read_audio(make(reference))[0]])[0])
    assert len(units) == len(expected)
    assert (units == expected).float().mean() >= agreement


# -- the paper tokeniser's framing ------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.isdir(REALDATA), reason="../shared/realdata is absent (it is beside CI's checkout)")
def test_the_mhubert_25hz_stack_gives_the_paper_tokenisers_frame_counts(tmp_path):
    """A HuBERT with mHuBERT-25Hz's convolutions (random weights, a tiny transformer) run through this project's
    feature path gives, for the two LibriVox files of ../shared/realdata, as many frames as the paper's tokeniser
    output there has (its durations add up to 352 and 398): whole, batched together, cut into fixed windows, and
    from 44.1 kHz stereo copies. The golden counts are read from features.jsonl, not written here."""
    from transformers import HubertConfig, HubertModel

    with open(os.path.join(REALDATA, "features.jsonl")) as f:
        counts = {os.path.basename(row["file_name"]): sum(row["duration"]) for row in map(json.loads, f)}
    files = [os.path.join(REALDATA, name) for name in ("audio1.flac", "audio2.flac")]
    golden = [counts[os.path.basename(path)] for path in files]
    config = HubertConfig(
        conv_dim=(16,) * 8, conv_kernel=MHUBERT_25HZ_KERNELS, conv_stride=MHUBERT_25HZ_STRIDES, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    torch.manual_seed(0)
    HubertModel(config).save_pretrained(tmp_path / "mhubert")
    extractor = HubertFeatures(str(tmp_path / "mhubert"), layer=2)
    assert (extractor.hop, extractor.window, extractor.frames_per_second) == (640, 720, 25.0)
    assigner = NearestCentroid(torch.randn(20, 32))

    def frames(rows, **kwargs):
        out, skipped, _ = tokenize_rows(rows, ["audio"], extractor, assigner, keep_durations=True, **kwargs)
        assert skipped == []
        counts = {}
        for row in out:
            counts[row["file"]] = counts.get(row["file"], 0) + int(row["duration"].sum())
        return [counts[os.path.basename(path)] for path in files]

    rows = [{"audio": path, "file": os.path.basename(path)} for path in files]
    windows = Segmenter("fixed", 5.0, hop=extractor.hop, window=extractor.window, context_seconds=0.5)
    stereo = [
        {
            "audio": encode(np.stack([resample_poly(read_audio(p)[0], 441, 160)] * 2, 1), 44100),
            "file": os.path.basename(p),
        }  # fmt: skip
        for p in files
    ]
    assert golden == [352, 398]
    assert frames(rows) == frames(rows, max_batch_samples=1) == golden
    assert frames(rows, segmenter=windows) == golden
    assert frames(stereo) == frames(stereo, segmenter=windows) == golden
