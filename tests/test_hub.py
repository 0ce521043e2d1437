"""Pushing to the Hub (a local folder stands in for it), the model card, the run's report, and experiment tracking."""

import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_recipe
from huggingface_hub import ModelCard
from local_hub import READ_TOKEN, USER, WRITE_TOKEN, LocalHub
from transformers import AutoModelForCausalLM

from slam_recipes.training.hub import model_card

PRETRAIN = os.path.join(REPO, "recipes", "pretrain.py")
DPO = os.path.join(REPO, "recipes", "dpo.py")
EVALUATE = os.path.join(REPO, "recipes", "evaluate.py")
PUSH = os.path.join(REPO, "recipes", "push_to_hub.py")
DEMO = os.path.join(REPO, "recipes", "demo")
PRETRAIN_YAML = os.path.join(DEMO, "pretrain.yaml")


def install_local_hub(patch, root) -> LocalHub:
    """The Hub, as a local folder, in place of transformers' shared client; logged in with a write token."""
    import huggingface_hub
    import transformers.utils.hub

    local = LocalHub(str(root))
    patch.setattr(transformers.utils.hub, "_hf_api", local)
    patch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(root) + "-no-token-file")
    patch.setenv("HF_TOKEN", WRITE_TOKEN)
    return local


@pytest.fixture
def hub(tmp_path, monkeypatch):
    return install_local_hub(monkeypatch, tmp_path / "hub")


def installed_trackers() -> list[str]:
    from transformers.integrations import is_tensorboard_available, is_trackio_available, is_wandb_available

    found = {
        "tensorboard": is_tensorboard_available(),
        "wandb": is_wandb_available(),
        "trackio": is_trackio_available(),
    }
    return [name for name, available in found.items() if available]


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory):
    """One tiny pretraining run of the demo recipe (6 steps, an evaluation at the end), reported to every installed
    tracker and pushed to the local Hub as `tester/tiny-slam`."""
    root = tmp_path_factory.mktemp("pushed")
    trackers = installed_trackers()
    # several trackers: a YAML list; no Trackio Space is deployed on push (transformers' default would, online)
    recipe = yaml.safe_load(Path(PRETRAIN_YAML).read_text()) | {
        "report_to": trackers,
        "trackio_static_space_id": False,
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.MonkeyPatch.context() as patch:
        hub = install_local_hub(patch, root / "hub")
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(root))
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("TRACKIO_DIR", str(root / "trackio"))
        patch.setenv("TENSORBOARD_LOGGING_DIR", str(root / "tb"))
        result = run_recipe(PRETRAIN, "--config", str(root / "recipe.yaml"), "--max_steps", "6", "--logging_steps", "2",
            "--eval_steps", "6", "--max_pairs", "16", "--save_strategy", "no", "--disable_tqdm", "true",
            "--validation_split", "", "--validation_fraction", "0.01", "--learning_rate", "0.002",
            "--output_dir", str(root / "run"), "--push_to_hub", "true", "--hub_model_id", "tiny-slam",
            "--run_name", "tiny-slam", "--project", "slam-tests",
        )  # fmt: skip
        wandb_config = None
        if "wandb" in trackers:
            import wandb

            wandb_config = dict(wandb.run.config)  # the offline run's config, synced as it is
            wandb.finish()
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "out": root / "run", "hub": hub, "trackers": trackers, "wandb_config": wandb_config}


def test_push_writes_a_model_card_and_the_model_loads_back_with_plain_transformers(pushed_run, tmp_path):
    hub = pushed_run["hub"]
    repo = pushed_run["root"] / "hub" / USER / "tiny-slam"  # namespace from the token, as on the Hub
    pushed = set(hub.list_repo_files(f"{USER}/tiny-slam"))
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "run_summary.json"} <= pushed
    assert {"recipe.yaml", "training.png"} <= pushed and not any(f.startswith("checkpoint-") for f in pushed)
    assert hub.commits[0] == (f"{USER}/tiny-slam", "Model save")  # the Trainer's push, at its final save

    # The card: what the model is, how it was trained, and the recipe in full.
    card = ModelCard.load(repo / "README.md")
    assert "slam-recipes" in card.data.tags and card.data.library_name == "transformers"
    text = card.text
    summary = json.loads((repo / "run_summary.json").read_text())
    assert summary["training"]["steps"] == 6 and summary["training"]["tokens_seen"] > 0
    assert f"| tokens seen | {summary['training']['tokens_seen']:,} |" in text
    assert "| base LM | `recipes/demo/tiny-qwen2` |" in text and "random, from the text LM's architecture" in text
    assert "- features: `mfcc`" in text and "- units: `500`" in text  # from data/demo/corpus.json
    assert "| hardware | 1 × CPU" in text and "| time budget used | 0:0" in text
    hardware = summary["hardware"]  # the demo recipe asks for bf16; the card says what the run got, and why
    assert hardware["precision_requested"] == "bf16" and hardware["precision"] in ("bf16", "fp32")
    expected = "bf16" if hardware["precision"] == "bf16" else f"fp32 (asked: bf16; {hardware['precision_reason']})"
    assert f"| precision | {expected} |" in text
    assert re.search(r"\| eval_loss \| [\d.]+ \|", text) and re.search(r"\| eval_swuggy \| [\d.]+ \|", text)
    recipe = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert recipe["learning_rate"] == 0.002 and recipe["max_steps"] == 6 and recipe["packing"] == "padding_free"
    assert recipe == yaml.safe_load((repo / "recipe.yaml").read_text()) == summary["recipe"]
    assert "hub_token" not in recipe and recipe["hub_model_id"] == "tiny-slam"

    # Loaded back from the "Hub" with plain transformers: this package is never imported.
    load = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(repo)!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(repo)!r})\n"
        "ids = tokenizer('<S><Un17><Un5>', return_tensors='pt')\n"
        "out = model.generate(**ids, max_new_tokens=12, do_sample=False)\n"
        "assert 'slam_recipes' not in sys.modules\n"
        "print(ids.input_ids.tolist()[0], out[0].tolist(), sep='|')\n"
    )
    result = subprocess.run([sys.executable, "-c", load], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    prompt, generated = result.stdout.strip().splitlines()[-1].split("|")
    assert prompt == "[1, 19, 7]"
    # the same continuation as the trained model in this process, by step-by-step argmax (a second path)
    model, ids = AutoModelForCausalLM.from_pretrained(pushed_run["out"]).eval(), [1, 19, 7]
    with torch.no_grad():
        while len(ids) < 15 and (len(ids) == 3 or ids[-1] != model.config.eos_token_id):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    assert json.loads(generated) == ids


def test_push_after_evaluation_adds_the_results_table(pushed_run, monkeypatch):
    out = pushed_run["out"]
    hub = install_local_hub(monkeypatch, pushed_run["root"] / "hub")
    assert run_recipe(EVALUATE, "--config", os.path.join(DEMO, "eval.yaml"), "--model_name_or_path", str(out),
        "--max_pairs", "16",
    ).returncode == 0  # fmt: skip
    assert run_recipe(PUSH, "--model_dir", str(out), "--hub_model_id", f"{USER}/tiny-slam").returncode == 0
    repo = pushed_run["root"] / "hub" / USER / "tiny-slam"
    text = ModelCard.load(repo / "README.md").text
    assert "Pairwise likelihood benchmarks" in text and re.search(r"\| tsc \| [\d.]+ \| 16 \|", text)
    assert (repo / "likelihood_eval.json").is_file() and hub.commits[-1][0] == f"{USER}/tiny-slam"


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_token", r"push_to_hub to 'taken': no Hugging Face token; log in with `hf auth login`, set HF_TOKEN"),
        ("bad_token", r"push_to_hub to 'taken': cannot check the token with the Hub: 401 Client Error"),
        ("read_token", r"the Hugging Face token is read-only; use a write token"),
        ("other_content", r"tester/taken already exists on the Hub with other content \(2 files, e.g. README.md\)"),
    ],
)
@pytest.mark.parametrize("script", [PRETRAIN, DPO], ids=["pretrain", "dpo"])
def test_bad_push_target_stops_before_training(hub, monkeypatch, tmp_path, script, case, message):
    if case == "no_token":
        monkeypatch.delenv("HF_TOKEN")
    elif case in ("bad_token", "read_token"):
        monkeypatch.setenv("HF_TOKEN", "hf_wrong" if case == "bad_token" else READ_TOKEN)
    os.makedirs(tmp_path / "hub" / USER / "taken")
    (tmp_path / "hub" / USER / "taken" / "README.md").write_text("---\nlicense: mit\n---\nSomeone else's model\n")
    (tmp_path / "hub" / USER / "taken" / "weights.bin").write_bytes(b"\0")
    out = tmp_path / "out"
    config = os.path.join(DEMO, "pretrain.yaml" if script == PRETRAIN else "dpo.yaml")
    args = ["--config", config, "--output_dir", str(out), "--push_to_hub", "true", "--hub_model_id", "taken"]
    result = run_recipe(script, *args)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(lines) == 1, lines
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() and hub.commits == []


def test_a_repo_this_package_pushed_can_be_pushed_again(hub, tmp_path):
    from slam_recipes.training.hub import check_push_target

    os.makedirs(tmp_path / "hub" / USER / "mine")
    (tmp_path / "hub" / USER / "mine" / "README.md").write_text("---\ntags:\n- slam-recipes\n---\n# mine\n")
    (tmp_path / "hub" / USER / "mine" / "model.safetensors").write_bytes(b"\0")
    assert check_push_target("mine", None) == f"{USER}/mine"
    assert check_push_target("org/new-repo", None) == "org/new-repo"


def test_checkpoints_pushed_while_training_are_whole(hub, tmp_path):
    """hub_strategy checkpoint: each checkpoint is uploaded from where it is written (output_dir/.saving) before it
    is renamed into place, so the Hub's last-checkpoint and the local checkpoint are the same whole checkpoint."""
    out = tmp_path / "run"
    result = run_recipe(PRETRAIN, "--config", PRETRAIN_YAML, "--max_steps", "4", "--save_strategy", "steps",
        "--save_steps", "2", "--eval_strategy", "no", "--disable_tqdm", "true", "--output_dir", str(out),
        "--push_to_hub", "true", "--hub_model_id", "staged", "--hub_strategy", "checkpoint",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    pushed = set(hub.list_repo_files(f"{USER}/staged"))
    local = set(os.listdir(out / "checkpoint-4"))
    assert {"optimizer.pt", "trainer_state.json"} <= local
    assert {f"last-checkpoint/{name}" for name in local} <= pushed
    assert not any(name.startswith((".saving", "checkpoint-")) for name in pushed)
    assert [message for _, message in hub.commits].count("Training in progress, step 4, checkpoint") == 1
    assert not (out / ".saving").exists()


def test_every_run_writes_its_summary_recipe_and_plot(pushed_run, tmp_path):
    """DPO too: run_summary.json (tokens, wall time, tokens/s, final losses, budget), recipe.yaml, training.png."""
    pretrained, out = pushed_run["out"], tmp_path / "dpo"
    result = run_recipe(DPO, "--config", os.path.join(DEMO, "dpo.yaml"), "--model_name_or_path", str(pretrained),
        "--output_dir", str(out), "--max_steps", "3", "--logging_steps", "1", "--eval_strategy", "no",
        "--save_strategy", "no", "--disable_tqdm", "true", "--time_budget", "01:00:00",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    state = json.loads((out / "trainer_state.json").read_text())
    training = summary["training"]
    assert summary["stage"] == "DPO" and summary["parent"] == {"model": str(pretrained), "stage": "pretraining"}
    assert summary["base_lm"] == "recipes/demo/tiny-qwen2"  # the lineage, through the pretrained run's summary
    assert summary["unit_tokenizer"]["backend"] == "mfcc"
    assert training["steps"] == 3 and training["tokens_seen"] == state["num_input_tokens_seen"] > 0
    # 3 steps log no interval: the peak is the process's own so far (the recipe ran in this process: its peak RSS
    # can only have grown since)
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert 0 < training["peak_memory_gib"] <= rss_gib + 0.001
    runtime = json.loads((out / "train_results.json").read_text())["train_runtime"]  # the Trainer's own figure
    # the same span, timed by the run's own clock (on_train_begin → on_train_end, kept across resumes)
    assert training["wall_time_seconds"] == pytest.approx(runtime, abs=0.5) and training["sessions"] == 1
    wall, tokens = training["wall_time_seconds"], training["tokens_seen"]  # the wall time is rounded to 0.1 s
    assert tokens / (wall + 0.05) - 0.1 <= training["tokens_per_second"] <= tokens / (wall - 0.05) + 0.1
    assert training["final_losses"]["train"] == [h["loss"] for h in state["log_history"] if "loss" in h][-1]
    budget = summary["budget"]
    assert budget["budget_seconds"] == 3600 and 0 < budget["used_seconds"] < 3600 and not budget["stopped_by_budget"]
    assert summary["hardware"]["num_processes"] == 1 and summary["recipe"]["max_steps"] == 3
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert yaml.safe_load((out / "recipe.yaml").read_text())["model_name_or_path"] == str(pretrained)
    assert f"This checkpoint: DPO of {pretrained} (pretraining)." in model_card(str(out))


def test_recipe_config_reaches_the_installed_trackers(pushed_run):
    """report_to: each installed tracker (TensorBoard, W&B offline, Trackio local) gets the whole recipe, next to the
    TrainingArguments transformers logs there."""
    root, trackers = pushed_run["root"], pushed_run["trackers"]
    assert trackers == ["tensorboard", "wandb", "trackio"]  # the dev extra installs all three
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(root / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    assert {"recipe/text_summary", "args/text_summary"} <= set(events.Tags()["tensors"])
    logged = events.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "context_length: 256" in logged and "max_steps: 6" in logged and "validation_fraction: 0.01" in logged

    recipe = pushed_run["wandb_config"]["recipe"]
    assert recipe["packing"] == "padding_free" and recipe["report_to"] == trackers
    assert pushed_run["wandb_config"]["learning_rate"] == 0.002  # the TrainingArguments, logged by transformers
    assert list((root / "wandb").glob("offline-run-*/run-*.wandb"))

    (database,) = (root / "trackio").glob("slam-tests*.db")
    with sqlite3.connect(database) as connection:
        (config,) = [json.loads(row[0]) for row in connection.execute("SELECT config FROM configs")]
    assert config["recipe"]["packing"] == "padding_free" and config["recipe"]["max_steps"] == 6
