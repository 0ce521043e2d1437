"""Speech continuation, the unit vocoder, and the generative metrics (GenPPL, auto-BLEU) on tiny offline models."""

import json
import math
import os

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO, TINY_VOCODER, run_recipe, write_jsonl

from slam_recipes.audio.vocoder import UnitHiFiGAN, VocoderConfig, fold_weight_norm, load_vocoder
from slam_recipes.configs import PAPER_SAMPLING, GenerateArguments, parse_recipe_args
from slam_recipes.errors import ConfigError, DataError
from slam_recipes.evaluation.generation import (
    build_generation_config,
    continue_prompts,
    generate_continuations,
    split_continuation,
)
from slam_recipes.evaluation.generative import generative_metrics, transcribe
from slam_recipes.evaluation.metrics import perplexity_summary, text_nll, text_token_ids
from slam_recipes.evaluation.prompts import cut_units, load_prompts
from slam_recipes.units import EOS_ID, NUM_SPECIAL, PAD_ID


@pytest.fixture(scope="module")
def unit_lm(tiny_unit_lm_dir):
    from slam_recipes.modeling.unit_lm import load_speech_lm

    return load_speech_lm(tiny_unit_lm_dir, 500, device="cpu")


@pytest.fixture(scope="module")
def vocoder_file(tmp_path_factory):
    """A random tiny vocoder saved in the textlesslib layout (weight-normalised convolutions + JSON config)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vocoder") / "hifigan_tiny.pt"
    UnitHiFiGAN(VocoderConfig.from_dict(TINY_VOCODER)).save_textless(str(path))
    return str(path)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


class Args:
    """What the recipes pass to `continue_prompts`: the sampling settings and batch sizes."""

    def __init__(self, **sampling):
        self.settings = {**PAPER_SAMPLING, "top_p": 1.0, **sampling}
        self.generation_batch_size, self.vocoder_batch_size, self.seed = 4, 2, 0

    def sampling(self):
        return self.settings


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------
def test_recipe_defaults_are_the_papers_sampling():
    (args,) = parse_recipe_args(
        (GenerateArguments,), ["--model_name_or_path", "m", "--prompts", "p", "--output_dir", "o"]
    )
    assert args.sampling() == {**PAPER_SAMPLING, "top_p": 1.0}
    assert PAPER_SAMPLING == {"do_sample": True, "temperature": 0.8, "top_k": 25, "max_new_tokens": 150,
                              "repetition_penalty": 1.1}  # fmt: skip
    assert args.prompt_seconds == 3.0 and args.num_prompts == 1000


def test_sampling_parameters_reach_generate(unit_lm, tmp_path, monkeypatch):
    seen = []
    real_generate = unit_lm.generate

    def spy(*args, **kwargs):
        seen.append(kwargs["generation_config"])
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(unit_lm, "generate", spy)
    from slam_recipes.evaluation.prompts import Prompt

    prompts = [Prompt(id=f"p{i}", units=np.arange(3 + i)) for i in range(5)]
    args = Args(temperature=0.7, top_k=9, max_new_tokens=6, repetition_penalty=1.3)
    records, _ = continue_prompts(unit_lm, prompts, args, str(tmp_path))
    assert len(seen) == 2  # 5 prompts in batches of 4
    config = seen[0]
    assert (config.do_sample, config.temperature, config.top_k, config.max_new_tokens) == (True, 0.7, 9, 6)
    assert config.repetition_penalty == 1.3 and config.eos_token_id == EOS_ID and config.pad_token_id == PAD_ID
    assert all(len(r["continuation"]) <= 6 for r in records)
    saved = read_jsonl(tmp_path / "generations.jsonl")
    assert [r["id"] for r in saved] == [f"p{i}" for i in range(5)] and saved[2]["prompt"] == [0, 1, 2, 3, 4]


def test_left_padded_batches_continue_like_single_prompts(unit_lm):
    prompts = [np.arange(n) % 500 for n in (3, 9, 17)]
    greedy = build_generation_config(do_sample=False, max_new_tokens=8)
    batched = generate_continuations(unit_lm, prompts, greedy, batch_size=3)
    alone = [generate_continuations(unit_lm, [p], greedy, batch_size=1)[0] for p in prompts]
    assert batched == alone and all(len(r["units"]) == 8 for r in batched)


def test_generation_stops_at_eos(unit_lm):
    prompts = [np.arange(4), np.arange(11)]
    unit7 = 7 + NUM_SPECIAL  # unit 7 is sampled first, then `<S>` always follows it
    config = build_generation_config(max_new_tokens=20, sequence_bias={(unit7,): 50.0, (unit7, EOS_ID): 100.0})
    assert generate_continuations(unit_lm, prompts, config) == [{"units": [7], "stopped_at_eos": True}] * 2
    at_once = build_generation_config(max_new_tokens=20, sequence_bias={(EOS_ID,): 100.0})
    assert generate_continuations(unit_lm, prompts, at_once) == [{"units": [], "stopped_at_eos": True}] * 2


def test_split_continuation_drops_eos_and_padding():
    assert split_continuation([5, 9, EOS_ID, PAD_ID, PAD_ID]) == {"units": [3, 7], "stopped_at_eos": True}
    assert split_continuation([5, 9]) == {"units": [3, 7], "stopped_at_eos": False}


def test_prompts_cut_to_seconds_by_run_lengths_or_units():
    # 3 s at 25 Hz = 75 frames. Runs of 50, 30, 10 frames start at frames 0, 50, 80: the second straddles the cut
    # and is kept (slamkit cuts the audio at 3 s, then tokenises: frames 50-74 still give that unit).
    assert cut_units(np.array([7, 9, 11]), np.array([50, 30, 10]), 75).tolist() == [7, 9]
    units = np.array([4, 8, 15, 16, 23, 42])
    assert cut_units(units, np.array([30, 30, 10, 20, 1, 1]), 75).tolist() == [4, 8, 15, 16]  # 16 starts at 70
    assert cut_units(units, np.array([30, 30, 15, 20, 1, 1]), 75).tolist() == [4, 8, 15]  # 16 starts at 75: out
    assert cut_units(units, None, 4).tolist() == [4, 8, 15, 16]
    assert cut_units(units, np.array([100, 1, 1, 1, 1, 1]), 75).tolist() == [4]  # never empty


def dedup_frames(frames: np.ndarray) -> list[int]:
    """Frame-level units → one unit per run (the tokeniser's dedup)."""
    return [int(u) for i, u in enumerate(frames) if i == 0 or u != frames[i - 1]]


def test_cut_by_run_lengths_equals_cutting_the_frames_then_deduplicating():
    """A second code path, the paper's order of operations: expand the runs to frames, keep the first 75 frames
    (the audio cut at 3 s), deduplicate."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        length = int(rng.integers(1, 12))
        units = np.cumsum(rng.integers(1, 5, length)) % 5  # deduplicated: no unit repeats its neighbour
        durations = rng.integers(1, 20, length)
        frames = np.repeat(units, durations)[:75]
        assert cut_units(units, durations, 75).tolist() == dedup_frames(frames)


def test_unit_prompts_with_run_lengths_keep_the_straddling_unit(tmp_path):
    rows = [{"units": [7, 9, 11], "duration": [50, 30, 10]}, {"units": [3, 4], "duration": [75, 5]}]
    prompts, how = load_prompts(write_jsonl(tmp_path / "units.jsonl", rows), num_units=500)
    assert [p.units.tolist() for p in prompts] == [[7, 9], [3]] and how["cut"] == "by run lengths"
    half, _ = load_prompts(write_jsonl(tmp_path / "half.jsonl", rows), num_units=500, prompt_seconds=2.0)
    assert [p.units.tolist() for p in half] == [[7], [3]]  # 50 frames: unit 9 starts at frame 50


def test_prompt_ids_are_file_names_and_keep_the_rows_own_ids(tmp_path):
    """Ids name the audio files, so they are made file-safe and unique; the dataset's own id is kept beside one
    that changed (`source_id`), whether it was edited, suffixed, or (ids that repeat) replaced by the row number."""
    rows = [{"units": [1, 2], "id": i} for i in ("a/b", "a_b", "c")]
    prompts, _ = load_prompts(write_jsonl(tmp_path / "p.jsonl", rows), num_units=500)
    assert [(p.id, p.source_id) for p in prompts] == [("a_b", "a/b"), ("a_b-2", "a_b"), ("c", None)]
    rows = [{"units": [1, 2], "id": "x"}] * 2
    prompts, _ = load_prompts(write_jsonl(tmp_path / "twice.jsonl", rows), num_units=500)
    assert [(p.id, p.source_id) for p in prompts] == [("twice-00000", "x"), ("twice-00001", "x")]


def test_unit_prompts_from_a_pair_dataset(tmp_path):
    rows = [{"positive": list(range(i, i + 100)), "negative": [1, 2], "id": f"story{i}"} for i in range(3)]
    prompts, how = load_prompts(write_jsonl(tmp_path / "ssc.jsonl", rows), num_units=500, num_prompts=2)
    assert [p.id for p in prompts] == ["story0", "story1"] and how["column"] == "positive"
    assert prompts[1].units.tolist() == list(range(1, 76))  # 3 s at 25 units/s, no run lengths known
    with pytest.raises(DataError, match=r"row 0: unit id 600 outside \[0, 500\)"):
        load_prompts(write_jsonl(tmp_path / "bad.jsonl", [{"units": [1, 600]}]), num_units=500)


def test_audio_prompts_are_read_resampled_cut_and_tokenised(tmp_path, caplog):
    from slam_recipes.audio.features import MFCCFeatures
    from slam_recipes.audio.kmeans import NearestCentroid

    rng = np.random.default_rng(0)
    (tmp_path / "wavs").mkdir()
    soundfile.write(tmp_path / "wavs" / "a.wav", rng.standard_normal(5 * 16000).astype(np.float32) * 0.1, 16000)
    soundfile.write(tmp_path / "wavs" / "b.wav", rng.standard_normal(5 * 8000).astype(np.float32) * 0.1, 8000)

    centroids = torch.randn(500, 39)

    def tokenizer():
        return MFCCFeatures(), NearestCentroid(centroids), False

    with caplog.at_level("WARNING"):
        prompts, how = load_prompts(str(tmp_path / "wavs"), num_units=500, prompt_seconds=2.0, tokenizer=tokenizer)
    assert [p.id for p in prompts] == ["a", "b"] and how["resampled"] == 1 and "resampled" in caplog.text
    assert all(abs(len(p.units) - 100) <= 1 for p in prompts)  # 2 s of 50 frames/s MFCCs, no dedup
    from datasets import Audio, Dataset

    paths = [str(tmp_path / "wavs" / n) for n in ("a.wav", "b.wav", "a.wav")]
    dataset = Dataset.from_dict({"audio": paths, "text": ["x", "y", "z"]}).cast_column("audio", Audio())
    dataset.save_to_disk(tmp_path / "hf")
    from_dataset, how = load_prompts(str(tmp_path / "hf"), num_units=500, num_prompts=3, tokenizer=tokenizer)
    assert [p.id for p in from_dataset] == ["a", "b", "a-2"] and [p.text for p in from_dataset] == ["x", "y", "z"]
    assert from_dataset[0].units.tolist() == load_prompts(str(tmp_path / "wavs" / "a.wav"), num_units=500,
                                                          tokenizer=tokenizer)[0][0].units.tolist()  # fmt: skip
    (tmp_path / "wavs" / "c.wav").write_bytes(b"not audio")
    with pytest.raises(DataError, match="c.wav: unreadable audio"):
        load_prompts(str(tmp_path / "wavs"), num_units=500, tokenizer=tokenizer)


# ---------------------------------------------------------------------------------------------------------------------
# Vocoder
# ---------------------------------------------------------------------------------------------------------------------
def test_vocoder_audio_length_follows_durations():
    torch.manual_seed(0)
    vocoder = UnitHiFiGAN(VocoderConfig.from_dict(TINY_VOCODER)).eval()
    assert vocoder.config.hop_length == 640
    units = torch.tensor([[3, 17, 99, 4], [5, 6, 0, 0]])
    durations = torch.tensor([[1, 2, 3, 4], [5, 1, 0, 0]])
    with torch.inference_mode():
        audio, samples = vocoder(units, torch.tensor([4, 2]), durations)
        predicted = vocoder.predict_durations(units, torch.tensor([4, 2]))
    assert samples.tolist() == [10 * 640, 6 * 640] and audio.shape == (2, 10 * 640)
    assert audio.abs().max() <= 1
    assert (predicted[:, :2] >= 1).all() and predicted[1, 2:].tolist() == [0, 0]  # ≥ 1 frame per unit, 0 in padding
    waves = vocoder.synthesize([[3, 17, 99], [], [5]], batch_size=2)
    with torch.inference_mode():
        frames = vocoder.predict_durations(torch.tensor([[3, 17, 99]]), torch.tensor([3])).sum().item()
    assert len(waves[0]) == frames * 640 and len(waves[1]) == 0 and len(waves[2]) % 640 == 0


def test_batched_vocoding_equals_each_sequence_alone():
    """Sequences of different lengths vocoded in one padded batch give the waveform each gets alone: the padding
    never reaches a real frame's durations or samples. Before the fix, the duration predictor and the generator's
    convolutions read the padding: a shorter sequence's last unit got another duration (a frame more or less) and its
    last samples changed with its batch neighbours."""
    torch.manual_seed(0)
    vocoder = UnitHiFiGAN(VocoderConfig.from_dict(TINY_VOCODER)).eval()
    rng = np.random.default_rng(4)
    sequences = [rng.integers(0, 500, size).tolist() for size in (23, 9, 16, 4)]
    batched = vocoder.synthesize(sequences, batch_size=4)
    for sequence, wave in zip(sequences, batched, strict=True):
        alone = vocoder.synthesize([sequence], batch_size=1)[0]
        assert len(wave) == len(alone)
        np.testing.assert_allclose(wave, alone, atol=1e-6)  # float rounding: 9e-8 measured; the padding: 1e-5 and more


def test_textless_checkpoint_round_trip_and_weight_norm_folding(vocoder_file):
    state = torch.load(vocoder_file, weights_only=True)["generator"]
    assert "conv_pre.weight_g" in state and "ups.0.weight_v" in state and "dur_predictor.conv1.0.weight" in state
    folded = fold_weight_norm(state)
    assert torch.allclose(folded["conv_pre.weight"], state["conv_pre.weight_v"], atol=1e-6)  # g = ‖v‖
    loaded = load_vocoder(vocoder_file, device="cpu")
    torch.manual_seed(0)
    fresh = UnitHiFiGAN(VocoderConfig.from_dict(TINY_VOCODER)).eval()
    sequences = [np.arange(12) % 500, np.arange(5) + 40]
    for a, b in zip(loaded.synthesize(sequences), fresh.synthesize(sequences), strict=True):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "case, message",
    [
        ("units", "the vocoder has 500 units but the model has 100"),
        ("config", "no such vocoder file"),
        ("layout", "does not match its config"),
    ],
)
def test_vocoder_bad_input_one_line(vocoder_file, tmp_path, case, message):
    from slam_recipes.evaluation.generation import check_vocoder

    with pytest.raises(ConfigError, match=message):
        if case == "units":
            check_vocoder(load_vocoder(vocoder_file, device="cpu"), 100, vocoder_file)
        elif case == "config":
            load_vocoder(vocoder_file, str(tmp_path / "missing.json"))
        else:
            other = {**TINY_VOCODER, "upsample_initial_channel": 64}
            (tmp_path / "other.json").write_text(json.dumps(other))
            load_vocoder(vocoder_file, str(tmp_path / "other.json"))


# ---------------------------------------------------------------------------------------------------------------------
# GenPPL and auto-BLEU
# ---------------------------------------------------------------------------------------------------------------------
def test_perplexity_summary_matches_the_papers_definition():
    summary = perplexity_summary([(2.0, 2), (3.0, 1), (0.0, 0)])  # file mean NLLs 1.0 and 3.0, one empty file
    assert summary["genppl"] == pytest.approx(math.exp(2.0))  # exp of the mean over files of mean NLL
    assert summary["mean_file_ppl"] == pytest.approx((math.e + math.e**3) / 2)
    assert summary["token_ppl"] == pytest.approx(math.exp(5 / 3))
    assert (summary["scored"], summary["empty"]) == (2, 1)


def test_text_nll_is_the_lm_loss_and_empty_text_scores_nothing(tiny_text_lm_with_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_text_lm_with_tokenizer).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    texts = ["the cat sat", "", "a much longer sentence to pad the batch"]
    nll = text_nll(texts, model, tokenizer, batch_size=2)
    ids = torch.tensor([text_token_ids(tokenizer, texts[0])])
    assert ids[0, 0] == tokenizer.bos_token_id and nll[1] == (0.0, 0)
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()  # mean NLL over the tokens after BOS
    assert nll[0][1] == ids.shape[1] - 1 and nll[0][0] / nll[0][1] == pytest.approx(loss, rel=1e-4)


def test_asr_pipeline_on_a_tiny_whisper_resamples_and_transcribes(tiny_whisper_dir):
    from slam_recipes.evaluation.generative import load_asr

    asr = load_asr(tiny_whisper_dir, device="cpu")
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(int(s * 22050)).astype(np.float32) * 0.1 for s in (1.0, 2.5, 0.5)]
    texts = transcribe(asr, waves, 22050, batch_size=2)
    assert texts == transcribe(asr, waves, 22050, batch_size=1)  # batching does not change the transcripts
    # A second code path: resample by hand (16000 / 22050 = 320 / 441), Whisper's processor and generate, decode.
    from scipy.signal import resample_poly
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()

    def direct(language):
        out = []
        for wave in waves:
            audio = resample_poly(wave, 320, 441).astype(np.float32)
            features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
            with torch.no_grad():
                ids = model.generate(features, language=language, task="transcribe")
            out.append(processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        return out

    assert texts == direct("en") and all(texts)
    french = transcribe(asr, waves, 22050, language="fr", batch_size=2)
    assert french == direct("fr") and french != texts  # the language reaches Whisper


def test_generative_metrics_auto_bleu_is_the_papers_by_default(tiny_text_lm_with_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_text_lm_with_tokenizer).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    texts = ["The dog ran. the dog sat.", "the cat saw the cat", ""]
    # NLTK words: no bigram of the first text repeats; (the cat) ×2 of 4; none in the empty one.
    paper = generative_metrics(texts, model, tokenizer)
    assert paper["auto_bleu_tokenizer"] == "nltk" and paper["auto_bleu_n"] == 2
    assert [f["auto_bleu"] for f in paper["files"]] == pytest.approx([0.0, 50.0, 0.0])
    assert paper["auto_bleu"] == pytest.approx(50.0 / 3)
    # Lower-cased without punctuation: (the dog) ×2 of 5 in the first text.
    normalized = generative_metrics(texts, model, tokenizer, auto_bleu_tokenizer="normalized")
    assert [f["auto_bleu"] for f in normalized["files"]] == pytest.approx([40.0, 50.0, 0.0])
    with pytest.raises(ConfigError, match="auto_bleu_tokenizer must be .* got 'bleu'"):
        generative_metrics(texts, model, tokenizer, auto_bleu_tokenizer="bleu")


# ---------------------------------------------------------------------------------------------------------------------
# The recipes
# ---------------------------------------------------------------------------------------------------------------------
def run(script, *args):
    return run_recipe(os.path.join(REPO, "recipes", script), *args)


def test_generative_evaluation_end_to_end(
    tmp_path, tiny_unit_lm_dir, vocoder_file, tiny_whisper_dir, tiny_text_lm_with_tokenizer
):
    rows = [{"positive": [(7 * i + j) % 500 for j in range(40 + i)], "negative": [1], "id": f"s{i}"} for i in range(3)]
    rows[1]["positive_text"] = "a story"
    prompts = write_jsonl(tmp_path / "ssc.jsonl", rows)
    out = tmp_path / "eval"
    result = run(
        "evaluate.py", "--config", os.path.join(REPO, "recipes", "slam", "eval_generative.yaml"),
        "--model_name_or_path", tiny_unit_lm_dir, "--prompts", prompts, "--vocoder_path", vocoder_file,
        "--asr_model", tiny_whisper_dir, "--ppl_model", tiny_text_lm_with_tokenizer, "--max_new_tokens", "12",
        "--output_dir", str(out), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "generative_eval.json").read_text())["results"]
    assert report["num_prompts"] == 3 and report["sampling"]["temperature"] == 0.8
    assert report["scored"] + report["empty"] == 3 and report["prompts"]["cut"] == "first units (no durations)"
    assert report["scored"] >= 1 and math.isfinite(report["genppl"]) and report["genppl"] > 1
    assert report["auto_bleu_tokenizer"] == "nltk" and "NLTK's word tokenizer" in report["auto_bleu_definition"]
    records = read_jsonl(out / "generative_eval" / "generations.jsonl")
    assert [r["id"] for r in records] == ["s0", "s1", "s2"] and all("transcript" in r for r in records)
    for r in records:
        assert r["prompt"] == rows[int(r["id"][1])]["positive"][:75] and len(r["continuation"]) <= 12
        audio, rate = soundfile.read(out / "generative_eval" / r["audio"])
        assert rate == 16000 and len(audio) >= 640 * (len(r["prompt"]) + len(r["continuation"]))
    page = (out / "generative_eval" / "index.html").read_text()
    assert page.count("<audio") == 6 and "audio/s1_prompt.wav" in page
    assert "GenPPL" in (out / "generative_eval.md").read_text()


def test_generate_recipe_writes_units_and_audio(tmp_path, tiny_unit_lm_dir, vocoder_file):
    """Greedy continuations (batched, left-padded) equal step-by-step argmax over full forward passes of each prompt
    alone, and each file's audio is the vocoder's output for prompt + continuation alone (16-bit WAV: within 2^-15)."""
    from transformers import AutoModelForCausalLM

    from slam_recipes.audio.vocoder import load_vocoder

    units = [list(range(i, i + 30 - 7 * i)) for i in range(2)]  # two lengths: the batch is left-padded
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"units": u} for u in units])
    result = run(
        "generate.py", "--model_name_or_path", tiny_unit_lm_dir, "--prompts", prompts, "--vocoder_path", vocoder_file,
        "--max_new_tokens", "5", "--do_sample", "false", "--repetition_penalty", "1.0",
        "--output_dir", str(tmp_path / "gen"), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(tmp_path / "gen" / "generations.jsonl")
    assert [r["id"] for r in records] == ["p-00000", "p-00001"] and [r["prompt"] for r in records] == units
    model, vocoder = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir).eval(), load_vocoder(vocoder_file)
    for record, prompt in zip(records, units, strict=True):
        ids = [1] + [u + 2 for u in prompt]
        with torch.no_grad():
            while len(ids) < len(prompt) + 6 and (len(ids) == len(prompt) + 1 or ids[-1] != 1):
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        expected = [t - 2 for t in ids[len(prompt) + 1 :] if t >= 2]
        assert record["continuation"] == expected and record["stopped_at_eos"] == (ids[-1] == 1)
        sequence = torch.tensor([prompt + expected])
        with torch.no_grad():
            audio, samples = vocoder(sequence, torch.tensor([sequence.shape[1]]))
        written, rate = soundfile.read(tmp_path / "gen" / record["audio"], dtype="float32")
        assert rate == vocoder.config.sampling_rate and len(written) == int(samples[0])
        np.testing.assert_allclose(written, audio[0, : int(samples[0])].numpy(), atol=2**-15 + 1e-6)
    assert (tmp_path / "gen" / "index.html").read_text().count("<audio") == 4
    # the folder now holds a run: another one is refused, or replaces it whole (no earlier audio or page left)
    before = (tmp_path / "gen" / "generations.jsonl").read_text()
    again = ["generate.py", "--model_name_or_path", tiny_unit_lm_dir, "--prompts", prompts, "--num_prompts", "1",
             "--max_new_tokens", "5", "--output_dir", str(tmp_path / "gen"), "--device", "cpu"]  # fmt: skip
    result = run(*again)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'gen'}: holds generations already; choose another output_dir or pass overwrite_output_dir"
    )
    assert (tmp_path / "gen" / "generations.jsonl").read_text() == before
    result = run(*again, "--overwrite_output_dir", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["id"] for r in read_jsonl(tmp_path / "gen" / "generations.jsonl")] == ["p-00000"]
    assert sorted(os.listdir(tmp_path / "gen")) == ["generation_config.json", "generations.jsonl"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("vocoder_units", "the vocoder has 500 units but the model has 100"),
        ("no_prompts", "prompts is required"),
        ("bad_audio", "broken.wav: unreadable audio"),
        ("model_units", "vocabulary mismatch: "),  # the prompts' unit 450 fits the model: num_units is wrong
    ],
)
def test_generate_bad_input_one_line_exit_2(tmp_path, tiny_unit_lm_dir, vocoder_file, case, message):
    args = ["--model_name_or_path", tiny_unit_lm_dir, "--output_dir", str(tmp_path / "out"), "--device", "cpu"]
    if case == "vocoder_units":
        args += ["--prompts", "x.jsonl", "--vocoder_path", vocoder_file, "--num_units", "100"]
    elif case == "bad_audio":
        (tmp_path / "wavs").mkdir()
        (tmp_path / "wavs" / "broken.wav").write_bytes(b"not audio")
        km = tmp_path / "km.npy"
        np.save(km, np.random.default_rng(0).standard_normal((500, 39)).astype(np.float32))
        args += ["--prompts", str(tmp_path / "wavs"), "--backend", "mfcc", "--kmeans_path", str(km)]
    elif case == "model_units":
        args += ["--prompts", write_jsonl(tmp_path / "p.jsonl", [{"units": [450, 3]}]), "--num_units", "300"]
    result = run("generate.py", *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message in lines[-1] and lines[-1].startswith("error:"), result.stderr[-2000:]
    assert not os.path.exists(tmp_path / "out" / "generations.jsonl")


@pytest.mark.parametrize(
    "option, message",
    [
        (["--asr_model", "no-such-whisper"], "cannot load the ASR model"),
        (["--auto_bleu_tokenizer", "moses"], "auto_bleu_tokenizer must be one of ('nltk', 'normalized'), got 'moses'"),
    ],
)
def test_evaluate_bad_generative_options_fail_before_generating(
    tmp_path, tiny_unit_lm_dir, vocoder_file, option, message
):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"units": [1, 2, 3]}])
    out = tmp_path / "eval"
    option = [str(tmp_path / v) if v == "no-such-whisper" else v for v in option]
    result = run(
        "evaluate.py", "--model_name_or_path", tiny_unit_lm_dir, "--prompts", prompts, "--vocoder_path", vocoder_file,
        *option, "--output_dir", str(out), "--device", "cpu",
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message in lines[-1] and lines[-1].startswith("error:"), result.stderr[-2000:]
    assert not out.exists()
