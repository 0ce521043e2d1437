"""Cross-modal StoryCloze (SIMS Table 3: S→S, S→T, T→S, T→T), generation across modalities and the speech-only
benchmarks on an interleaved model: sample layouts against hand-built id sequences, ending-only scores and greedy
continuations against a plain float64 log-softmax / argmax loop over each sample alone, and the evaluation and
generation recipes end to end."""

import html
import json
import os

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_VOCODER, run_recipe, write_jsonl

from slam_recipes.errors import DataError
from slam_recipes.evaluation.cross_modal import (
    cross_modal_sequence,
    evaluate_cross_modal,
    load_cross_modal_benchmark,
    speech_pairs_for_interleaved,
)
from slam_recipes.evaluation.likelihood import PairBenchmark, sequence_log_likelihoods
from slam_recipes.modeling.interleaved import extend_text_lm

NUM_UNITS = 20
FIRST_UNIT, SPEECH, TEXT, BOS, EOS = 258, 278, 279, 0, 1  # the tiny byte-level tokenizer extended by 20 units


@pytest.fixture(scope="module")
def interleaved_lm(tiny_text_lm_with_tokenizer, tmp_path_factory):
    """The tiny text LM extended with 20 units and the markers, saved as a checkpoint folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_text_lm_with_tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(tiny_text_lm_with_tokenizer)
    torch.manual_seed(0)
    vocab = extend_text_lm(model, tokenizer, NUM_UNITS)
    with torch.no_grad():  # distinct unit and marker rows, so that units are told apart
        model.get_input_embeddings().weight[FIRST_UNIT:] = torch.randn(22, model.config.hidden_size) * 0.5
    folder = tmp_path_factory.mktemp("interleaved-lm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), model.eval(), tokenizer, vocab


def chars(tokenizer, text: str) -> list[int]:
    """Byte-level tokens of `text` looked up one character at a time (the tiny tokenizer has no merges)."""
    return tokenizer.convert_tokens_to_ids(["Ġ" if c == " " else c for c in text])


def test_each_direction_lays_out_markers_as_in_training(interleaved_lm):
    _, _, tokenizer, vocab = interleaved_lm
    prompt, ending = (np.array([3, 4]), "ab"), (np.array([4, 5]), "cd")

    def sequence(direction):
        return cross_modal_sequence(prompt, ending, direction, vocab=vocab, encode_text=lambda t: tokenizer(
            t, add_special_tokens=False)["input_ids"], bos=BOS)  # fmt: skip

    u = FIRST_UNIT
    # S→S: one speech run; the ending's first unit repeats the prompt's last and is merged with it
    assert sequence("S2S") == ([BOS, SPEECH, u + 3, u + 4, u + 5], 4)
    assert sequence("S2T") == ([BOS, SPEECH, u + 3, u + 4, TEXT, *chars(tokenizer, "cd")], 5)
    assert sequence("T2S") == ([BOS, TEXT, *chars(tokenizer, "ab"), SPEECH, u + 4, u + 5], 5)
    # T→T: one text run, the ending after a space
    assert sequence("T2T") == ([BOS, TEXT, *chars(tokenizer, "ab"), *chars(tokenizer, " cd")], 4)


def hand_log_likelihood(model, ids: list[int], first: int, mean: bool) -> float:
    """log p of ids[first:] given the ids before, from one float64 log-softmax of the sequence alone."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    picked = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[first - 1 :]
    return float(picked.mean() if mean else picked.sum())


@pytest.mark.parametrize("mean", [True, False])
def test_only_the_ending_is_scored_whatever_the_batch(interleaved_lm, mean):
    """Sequences of different lengths and scoring starts, batched with padding, score as each alone does."""
    _, model, _, _ = interleaved_lm
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, 280, size=n).tolist() for n in (9, 4, 15, 7)]
    firsts = [5, 1, 12, 3]
    expected = [hand_log_likelihood(model, s, f, mean) for s, f in zip(sequences, firsts, strict=True)]
    got = sequence_log_likelihoods(model, [np.array(s) for s in sequences], mean=mean, first_scored=firsts)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="first_scored"):
        sequence_log_likelihoods(model, [np.array(sequences[1])], first_scored=[4])


def cross_modal_rows(seed: int = 1, n: int = 6) -> list[dict]:
    rng = np.random.default_rng(seed)
    words = ["cat", "dog", "sat", "ran", "the", "a", "mat", "sun"]

    def text():
        return " ".join(rng.choice(words, size=rng.integers(2, 5)))

    return [
        {"id": str(i // 2), "prompt": rng.integers(0, NUM_UNITS, 6).tolist(), "prompt_text": text(),
         "positive": rng.integers(0, NUM_UNITS, 4).tolist(), "positive_text": text(),
         "negative": rng.integers(0, NUM_UNITS, 5).tolist(), "negative_text": text()}
        for i in range(n)
    ]  # fmt: skip


def hand_scores(model, tokenizer, rows, mean: bool) -> dict[str, float]:
    """Each direction's score (× 100) from sequences built here by hand and scored alone, pairs averaged within
    each `id`, then over ids."""
    u = FIRST_UNIT

    def layout(direction, row, side):
        prompt_units, ending_units = [u + k for k in row["prompt"]], [u + k for k in row[side]]
        prompt_text, ending_text = chars(tokenizer, row["prompt_text"]), chars(tokenizer, row[f"{side}_text"])
        ending_same_run = ending_units[1:] if ending_units[0] == prompt_units[-1] else ending_units
        head, body = {
            "S2S": ([BOS, SPEECH, *prompt_units], ending_same_run),
            "S2T": ([BOS, SPEECH, *prompt_units, TEXT], ending_text),
            "T2S": ([BOS, TEXT, *prompt_text, SPEECH], ending_units),
            "T2T": ([BOS, TEXT, *prompt_text], chars(tokenizer, " " + row[f"{side}_text"])),
        }[direction]
        return head + body, len(head)

    scores = {}
    for direction in ("S2S", "S2T", "T2S", "T2T"):
        groups: dict[str, list[float]] = {}
        for row in rows:
            a, b = (
                hand_log_likelihood(model, *layout(direction, row, side), mean) for side in ("positive", "negative")
            )
            groups.setdefault(row["id"], []).append(1.0 if a > b else 0.5 if a == b else 0.0)
        scores[direction] = 100 * np.mean([np.mean(g) for g in groups.values()])
    return scores


@pytest.mark.parametrize("mean", [True, False])
def test_pair_scores_match_hand_computed_ones(interleaved_lm, tmp_path, mean):
    _, model, tokenizer, vocab = interleaved_lm
    rows = cross_modal_rows()
    benchmark = load_cross_modal_benchmark("tsc", write_jsonl(tmp_path / "x.jsonl", rows), NUM_UNITS)
    results = evaluate_cross_modal(model, tokenizer, vocab, benchmark, mean_nll=mean)
    expected = hand_scores(model, tokenizer, rows, mean)
    assert {d: r["score"] for d, r in results.items()} == pytest.approx(expected)
    assert len(set(expected.values())) > 1  # the directions really differ on this model
    assert all(r["num_pairs"] == 6 and r["num_groups"] == 3 for r in results.values())


def test_speech_only_samples_are_framed_as_speech_only_training_rows(interleaved_lm):
    _, _, tokenizer, vocab = interleaved_lm
    benchmark = PairBenchmark("x", "x.jsonl", [np.array([1, 5, 6, 1])], [np.array([1, 21, 1])], {"id": ["0"]})
    framed = speech_pairs_for_interleaved(benchmark, vocab, tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert [s.tolist() for s in framed.positive + framed.negative] == [[BOS, 261, 262, EOS], [BOS, 277, EOS]]
    no_bos = speech_pairs_for_interleaved(benchmark, vocab, None, EOS)  # Qwen2.5's tokenizer has no BOS
    assert no_bos.positive[0].tolist() == [261, 262, EOS]


@pytest.mark.parametrize(
    "change, message",
    [(lambda r: r.pop("negative_text"), r"missing column\(s\) \['negative_text'\]"),
     (lambda r: r.update(prompt_text=" "), "row 0: the prompt has no text"),
     (lambda r: r.update(positive=[]), "'positive' row 0: empty unit sequence"),
     (lambda r: r.update(prompt=[3, 20]), "20")],
)  # fmt: skip
def test_a_bad_cross_modal_dataset_is_a_one_line_error(tmp_path, change, message):
    rows = cross_modal_rows(n=2)
    change(rows[0])
    if "negative_text" not in rows[0]:
        rows[1].pop("negative_text")
    with pytest.raises(DataError, match=message):
        load_cross_modal_benchmark("x", write_jsonl(tmp_path / "bad.jsonl", rows), NUM_UNITS)


def test_the_evaluation_recipe_scores_an_interleaved_model(interleaved_lm, tiny_unit_lm_dir, tmp_path):
    """recipes/evaluate.py recognises the interleaved checkpoint by its tokenizer: the speech-only benchmark scores as
    the reference scorer on re-framed samples, and each cross-modal direction as the hand-built sequences. A unit LM
    given cross-modal benchmarks is a one-line error."""
    from conftest import reference_pair_score

    folder, model, tokenizer, vocab = interleaved_lm
    rows = cross_modal_rows(seed=2)
    rng = np.random.default_rng(3)
    speech = [{"id": str(i), "positive": rng.integers(0, NUM_UNITS, 7).tolist(),
               "negative": rng.integers(0, NUM_UNITS, 6).tolist()} for i in range(5)]  # fmt: skip
    cross_path, speech_path = write_jsonl(tmp_path / "x.jsonl", rows), write_jsonl(tmp_path / "s.jsonl", speech)
    out = tmp_path / "eval"
    result = run_recipe(
        os.path.join(REPO, "recipes", "evaluate.py"), "--model_name_or_path", folder, "--num_units", str(NUM_UNITS),
        "--benchmarks", f"swuggy={speech_path}", "--cross_modal_benchmarks", f"tsc={cross_path}",
        "--output_dir", str(out), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "likelihood_eval.json") as f:
        report = json.load(f)
    assert report["interleaved"] is True
    scores = {name: r["score"] for name, r in report["results"].items()}
    framed = PairBenchmark(
        "swuggy", speech_path,
        [np.array([BOS, *(FIRST_UNIT + np.array(r["positive"])), EOS]) for r in speech],
        [np.array([BOS, *(FIRST_UNIT + np.array(r["negative"])), EOS]) for r in speech],
        {"id": [r["id"] for r in speech]},
    )  # fmt: skip
    assert scores.pop("swuggy") == pytest.approx(reference_pair_score(model, framed))
    expected = hand_scores(model, tokenizer, rows, mean=True)
    assert scores == pytest.approx({f"tsc_{d.lower()}": v for d, v in expected.items()})
    assert "| tsc_s2t |" in (out / "likelihood_eval.md").read_text()

    refused = run_recipe(
        os.path.join(REPO, "recipes", "evaluate.py"), "--model_name_or_path", tiny_unit_lm_dir,
        "--cross_modal_benchmarks", f"tsc={cross_path}", "--output_dir", str(tmp_path / "no"), "--device", "cpu",
    )  # fmt: skip
    assert refused.returncode == 2 and "cross_modal_benchmarks needs an interleaved model" in refused.stderr
    assert not (tmp_path / "no").exists()


# -- generation across modalities ---------------------------------------------------------------------------------------
def hand_greedy(model, ids: list[int], allowed, eos: int, steps: int) -> list[int]:
    """Greedy decoding the plain way: one forward pass of the whole sequence per new token, the best allowed one."""
    out = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
        mask = torch.full_like(logits, float("-inf"))
        mask[list(allowed)] = 0
        token = int(torch.argmax(logits + mask))
        if token == eos:
            break
        out.append(token)
    return out


@pytest.mark.parametrize("direction", ["S2T", "T2S"])
def test_greedy_continuations_across_modalities_match_a_plain_decoding_loop(interleaved_lm, direction):
    """A speech prompt continued in text samples no unit or marker; a text prompt continued in speech samples only
    units (or EOS); greedy outputs equal a plain argmax loop over the allowed tokens, batched or one at a time."""
    from slam_recipes.evaluation.cross_modal import cross_modal_generation_config, generate_cross_modal

    _, model, tokenizer, vocab = interleaved_lm
    prompts = [(np.array([3, 4, 9]), "the cat"), (np.array([1]), "a dog ran"), (np.array([5, 6, 7, 8, 2]), "sun")]
    config = cross_modal_generation_config(
        tokenizer, vocab, direction, do_sample=False, max_new_tokens=6, repetition_penalty=1.0
    )
    one = generate_cross_modal(model, tokenizer, vocab, prompts, direction, config, batch_size=1)
    batched = generate_cross_modal(model, tokenizer, vocab, prompts, direction, config, batch_size=3)
    assert one == batched
    units = set(range(FIRST_UNIT, FIRST_UNIT + NUM_UNITS))
    allowed = units | {EOS} if direction == "T2S" else set(range(FIRST_UNIT)) - {tokenizer.pad_token_id} | {EOS}
    for (prompt_units, text), out in zip(prompts, one, strict=True):
        if direction == "S2T":
            head = [BOS, SPEECH, *(FIRST_UNIT + prompt_units).tolist(), TEXT]
        else:
            head = [BOS, TEXT, *chars(tokenizer, text), SPEECH]
        expected = hand_greedy(model, head, allowed, EOS, 6)
        if direction == "T2S":
            assert out["continuation"] == [t - FIRST_UNIT for t in expected]
            assert all(0 <= u < NUM_UNITS for u in out["continuation"])
        else:
            assert out["continuation"] == tokenizer.decode(expected, skip_special_tokens=True)
            assert "<Un" not in out["continuation"] and "<speech>" not in out["continuation"]
        assert out["stopped_at_eos"] == (len(expected) < 6)


def test_the_generation_recipe_continues_across_modalities(interleaved_lm, tiny_unit_lm_dir, tmp_path):
    """recipes/generate.py on an interleaved checkpoint: spoken prompts continued in text, written prompts continued
    in units, each record naming its direction, the spoken side vocoded and the written side on the listening page;
    asking a unit LM for a direction is a one-line error."""
    from slam_recipes.audio.vocoder import UnitHiFiGAN, VocoderConfig

    folder = interleaved_lm[0]
    prompts = write_jsonl(tmp_path / "p.jsonl", cross_modal_rows(n=3))
    vocoder = str(tmp_path / "hifigan_tiny.pt")
    torch.manual_seed(0)
    UnitHiFiGAN(VocoderConfig.from_dict({**TINY_VOCODER, "num_embeddings": NUM_UNITS})).save_textless(vocoder)
    script = os.path.join(REPO, "recipes", "generate.py")
    common = ["--model_name_or_path", folder, "--num_units", str(NUM_UNITS), "--prompts", prompts,
              "--max_new_tokens", "5", "--device", "cpu", "--vocoder_path", vocoder]  # fmt: skip
    for direction, column in (("S2T", "prompt"), ("T2S", "prompt_text")):
        out = tmp_path / direction
        result = run_recipe(script, *common, "--prompts_column", column, "--prompt_seconds", "null",
                            "--cross_modal_direction", direction, "--output_dir", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
        rows = cross_modal_rows(n=3)
        assert [r["direction"] for r in records] == [{"S2T": "S→T", "T2S": "T→S"}[direction]] * 3
        page = (out / "index.html").read_text()
        if direction == "S2T":
            assert [r["prompt"] for r in records] == [row["prompt"] for row in rows]
            assert all(isinstance(r["continuation"], str) for r in records)
            assert all((out / r["prompt_audio"]).is_file() and "audio" not in r for r in records)
            written = [r["continuation"] for r in records]
        else:
            assert [r["prompt"] for r in records] == [row["prompt_text"] for row in rows]
            assert all(0 <= u < NUM_UNITS for r in records for u in r["continuation"])
            assert all((out / r["audio"]).is_file() and "prompt_audio" not in r for r in records)
            written = [r["prompt"] for r in records]
        assert page.count("<audio") == 3 and all(f"<p>{html.escape(text)}</p>" in page for text in written)
    refused = run_recipe(script, "--model_name_or_path", tiny_unit_lm_dir, "--prompts", prompts,
                         "--cross_modal_direction", "S2T", "--output_dir", str(tmp_path / "no"))  # fmt: skip
    assert refused.returncode == 2 and "cross_modal_direction needs an interleaved model" in refused.stderr


def test_prompts_in_the_wrong_modality_are_refused_before_any_model_loads(interleaved_lm, tiny_unit_lm_dir, tmp_path):
    """T2S reads a text column and S2T units; a speech-only model takes no text prompts. Each is a one-line error
    that names the column, with nothing written."""
    folder = interleaved_lm[0]
    prompts = write_jsonl(tmp_path / "p.jsonl", cross_modal_rows(n=2))
    script = os.path.join(REPO, "recipes", "generate.py")
    for model, extra, message in (
        (folder, ["--cross_modal_direction", "T2S", "--prompts_column", "prompt"], "T2S reads a text column"),
        (folder, ["--cross_modal_direction", "S2T", "--prompts_column", "prompt_text"], "S2T reads units or audio"),
        (tiny_unit_lm_dir, ["--prompts_column", "prompt_text"], "only an interleaved model continues text"),
    ):
        out = tmp_path / "out"
        units = str(NUM_UNITS if model == folder else 500)  # each model's own unit count
        result = run_recipe(script, "--model_name_or_path", model, "--num_units", units, "--prompts", prompts,
                            *extra, "--output_dir", str(out))  # fmt: skip
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and not out.exists()


def test_the_unit_count_and_the_model_path_are_checked(interleaved_lm, tiny_unit_lm_dir, tmp_path):
    from slam_recipes.errors import ConfigError
    from slam_recipes.modeling.interleaved import load_interleaved_tokenizer

    folder = interleaved_lm[0]
    assert load_interleaved_tokenizer(folder, NUM_UNITS)[1].first_unit_id == FIRST_UNIT
    assert load_interleaved_tokenizer(tiny_unit_lm_dir, 500) is None  # a unit LM: no markers
    with pytest.raises(ConfigError, match=f"^{folder}: the tokenizer has more unit tokens than num_units"):
        load_interleaved_tokenizer(folder, NUM_UNITS - 1)
    with pytest.raises(ConfigError, match=f"^{folder}: the tokenizer has {NUM_UNITS} unit tokens, not num_units"):
        load_interleaved_tokenizer(folder, NUM_UNITS + 1)
    with pytest.raises(ConfigError, match="no-such-model: no such folder"):
        load_interleaved_tokenizer(str(tmp_path / "no-such-model"), NUM_UNITS)


def test_evaluation_checks_either_kind_of_model_against_num_units(interleaved_lm, tiny_unit_lm_dir):
    """load_model_vocabulary: an interleaved checkpoint's (tokenizer, vocab); for a unit LM None, once its
    vocabulary matches num_units, and a one-line error naming it when it does not."""
    from slam_recipes.errors import ConfigError
    from slam_recipes.modeling.interleaved import load_model_vocabulary

    folder = interleaved_lm[0]
    assert load_model_vocabulary(folder, NUM_UNITS)[1].first_unit_id == FIRST_UNIT
    with pytest.raises(ConfigError, match=f"^{folder}: the tokenizer has more unit tokens than num_units"):
        load_model_vocabulary(folder, NUM_UNITS - 1)
    assert load_model_vocabulary(tiny_unit_lm_dir, 500) is None
    with pytest.raises(ConfigError, match=f"{tiny_unit_lm_dir} has vocab_size 502, the unit tokenizer has 302"):
        load_model_vocabulary(tiny_unit_lm_dir, 300)


def test_result_names_are_checked_against_the_cross_modal_ones():
    from slam_recipes.configs import EvalArguments, parse_recipe_args
    from slam_recipes.errors import ConfigError

    common = ["--model_name_or_path", "m", "--cross_modal_benchmarks", "tsc=x.parquet"]
    with pytest.raises(ConfigError, match=r"benchmarks: the name\(s\) \['tsc_s2t'\] are also cross-modal results"):
        parse_recipe_args((EvalArguments,), [*common, "--benchmarks", "tsc_s2t=y.parquet"])
    with pytest.raises(ConfigError, match="cross_modal_benchmarks: the name 'a' is given twice"):
        parse_recipe_args((EvalArguments,), ["--model_name_or_path", "m", "--cross_modal_benchmarks", "a=x", "a=y"])
    (args,) = parse_recipe_args((EvalArguments,), [*common, "--cross_modal_directions", "T2T", "S2T"])
    assert args.cross_modal_result_names() == {"tsc_t2t": ("tsc", "T2T"), "tsc_s2t": ("tsc", "S2T")}


def test_directions_without_a_cross_modal_benchmark_warn():
    from slam_recipes.configs import EvalArguments, parse_recipe_args

    with pytest.warns(UserWarning, match="cross_modal_directions is set but no cross_modal_benchmarks"):
        parse_recipe_args(
            (EvalArguments,), ["--model_name_or_path", "m", "--benchmarks", "a=x", "--cross_modal_directions", "S2T"]
        )


def test_the_listening_page_shows_the_written_side_of_each_record(tmp_path):
    """Across modalities the page shows a written prompt or continuation as escaped text beside the spoken side's
    audio, names each row's direction and counts the continuation in its own unit; speech-only pages are unchanged."""
    from slam_recipes.evaluation.generation import write_listening_page

    records = [
        {"id": "a", "direction": "S→T", "prompt": [3, 4], "continuation": "the <cow> & hen",
         "prompt_audio": "audio/a_prompt.wav", "stopped_at_eos": True},
        {"id": "b", "direction": "T→S", "prompt": "two \"pigs\"", "continuation": [5, 6, 7],
         "audio": "audio/b.wav", "stopped_at_eos": False},
    ]  # fmt: skip
    write_listening_page(str(tmp_path / "index.html"), records, "cross")
    rows = (tmp_path / "index.html").read_text().split("<tr>")[2:]
    assert "<td>S→T</td>" in rows[0] and "<p>the &lt;cow&gt; &amp; hen</p>" in rows[0] and "15 characters" in rows[0]
    assert 'src="audio/a_prompt.wav"' in rows[0] and "<p>[" not in rows[0]
    assert "<td>T→S</td>" in rows[1] and "<p>two &quot;pigs&quot;</p>" in rows[1] and "3 units" in rows[1]
    assert 'src="audio/b.wav"' in rows[1]
    assert "<th>continuation</th>" in (tmp_path / "index.html").read_text()  # no S→S row: no prompt in the audio
    write_listening_page(str(tmp_path / "speech.html"), [{"id": "c", "prompt": [1], "continuation": [2, 3]}], "s")
    page = (tmp_path / "speech.html").read_text()
    assert "direction" not in page and "<p>" not in page and "2 units" in page
    assert "transcript" not in page and "PPL" not in page  # the generative metrics' columns, when they ran


def test_t2t_has_nothing_to_vocode():
    """S2T vocodes its spoken prompt and T2S its spoken ending; a vocoder given to T2T would be silently unused."""
    from slam_recipes.configs import GenerateArguments, parse_recipe_args
    from slam_recipes.errors import ConfigError

    common = ["--model_name_or_path", "m", "--prompts", "p.parquet", "--output_dir", "o", "--vocoder_path", "v.pt"]
    with pytest.raises(ConfigError, match=r"^vocoder_path: a T2T generation has no speech to vocode"):
        parse_recipe_args((GenerateArguments,), [*common, "--cross_modal_direction", "T2T"])
    for direction in ("S2T", "T2S", "S2S"):
        (args,) = parse_recipe_args((GenerateArguments,), [*common, "--cross_modal_direction", direction])
        assert args.vocoder_path == "v.pt"


def test_the_model_card_of_an_interleaved_model(interleaved_lm):
    """The card states the extended vocabulary (the saved config's size) and the markers, and its snippet's prompt
    tokenizes, with the checkpoint's own tokenizer, to the BOS, `<speech>` and the two units, as training lays it."""
    from transformers import AutoTokenizer

    from slam_recipes.training.hub import model_card

    folder, model, tokenizer, vocab = interleaved_lm
    summary = {"stage": "pretraining", "base_lm": "tiny", "recipe": {"interleaved": True},
               "model": {"num_units": NUM_UNITS, "twist_init": True}}  # fmt: skip
    card = model_card(folder, "me/sims", summary)
    size = model.config.vocab_size
    assert f"| vocabulary | {size:,}: the base LM's text tokens, 20 units `<Un0>` … `<Un19>` and the markers" in card
    assert "An interleaved speech–text language model" in card and "- interleaved" in card and "textless" not in card
    snippet = card.split("```python\n")[1].split("```")[0]
    lines = [line for line in snippet.splitlines() if line.startswith(("text =", "prompt ="))]
    scope = {"tokenizer": AutoTokenizer.from_pretrained(folder)}
    exec("\n".join(lines), scope)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    expected = bos + [vocab.speech_id, vocab.first_unit_id + 17, vocab.first_unit_id + 5]
    assert scope["prompt"]["input_ids"][0].tolist() == expected


def test_an_unknown_direction_is_named_with_the_choices():
    from slam_recipes.configs import check_cross_modal_directions
    from slam_recipes.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^cross_modal_directions: 's2t'; choose from S2S, S2T, T2S, T2T \(upper"):
        check_cross_modal_directions(["S2S", "s2t"])
    with pytest.raises(ConfigError, match="^cross_modal_directions: none given; choose from"):
        check_cross_modal_directions([])
    check_cross_modal_directions(["T2T", "S2T"])
