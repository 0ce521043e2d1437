"""Reliability: preemption and resume inside the time budget, and determinism."""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, run_recipe

PRETRAIN = os.path.join(REPO, "recipes", "pretrain.py")
DPO = os.path.join(REPO, "recipes", "dpo.py")
DEMO = os.path.join(REPO, "recipes", "demo")
EXIT_PREEMPTED = 75
QUICK = (  # the demo recipe, 16 steps, a loss logged at every step
    "--max_steps", "16", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
    "--disable_tqdm", "true",
)  # fmt: skip


def losses(output_dir) -> dict[int, float]:
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return {h["step"]: h["loss"] for h in json.load(f)["log_history"] if "loss" in h}


def signal_after_logs(command: list[str], signum: int, logs: int) -> tuple[int, str]:
    """Start a recipe, send it `signum` once it has logged `logs` training steps; its exit code and output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each log line as it is printed, not when a buffer fills
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output, seen = [], 0
    for line in process.stdout:
        output.append(line)
        seen += "'loss'" in line
        if seen == logs and process.poll() is None:
            process.send_signal(signum)
            seen += 1
    return process.wait(timeout=300), "".join(output)


def test_sigterm_checkpoints_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """SIGTERM to the real recipe process: a checkpoint at the next step boundary, exit 75; the resumed run has the
    same data order, optimizer and schedule (identical losses to an uninterrupted run) and the original deadline."""
    out = tmp_path / "preempted"
    command = [
        sys.executable,
        PRETRAIN,
        "--config",
        os.path.join(DEMO, "pretrain.yaml"),
        *QUICK,
        "--output_dir",
        str(out),
    ]
    code, output = signal_after_logs(command, signal.SIGTERM, logs=4)
    assert code == EXIT_PREEMPTED, output[-3000:]
    (checkpoint,) = [name for name in os.listdir(out) if name.startswith("checkpoint-")]
    stopped = int(checkpoint.split("-")[1])
    assert 4 <= stopped <= 6  # the step running when the signal came: at most one step of work is lost
    assert f"preempted at step {stopped}: {out}/checkpoint-{stopped} written" in output
    assert not (out / "model.safetensors").exists()  # the run is not finished: no final model
    with open(out / checkpoint / "trainer_state.json") as f:
        stateful = json.load(f)["stateful_callbacks"]
    spent = stateful["TimeBudgetCallback"]["attributes"]["elapsed_before"]
    trained = stateful["TrainingClockCallback"]["attributes"]["seconds"]  # training time up to the checkpoint
    assert spent > 0

    (out / "checkpoint-99").mkdir()  # a save a crash cut short: never resumed from, removed
    (out / "checkpoint-99" / "model.safetensors").write_bytes(b"\0")
    resumed = run_recipe(PRETRAIN, "--config", os.path.join(DEMO, "pretrain.yaml"), *QUICK, "--output_dir", str(out),
                         "--resume_from_checkpoint", "true")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = tmp_path / "whole"
    assert (
        run_recipe(
            PRETRAIN, "--config", os.path.join(DEMO, "pretrain.yaml"), *QUICK, "--output_dir", str(whole)
        ).returncode
        == 0
    )
    assert losses(out) == losses(whole) and max(losses(out)) == 16
    assert not (out / "checkpoint-99").exists()
    with open(out / "run_summary.json") as f:
        summary = json.load(f)
    # the run's training time spans both sessions; the budget used, both too: the deadline was kept
    session = summary["training"]["wall_time_seconds"] - trained
    assert summary["training"]["sessions"] == 2 and trained == pytest.approx(spent, abs=0.5) and session > 0
    assert summary["budget"]["used_seconds"] == pytest.approx(spent + session, abs=1.0)


def test_sigint_during_dpo_checkpoints_too(tmp_path, tiny_unit_lm_dir):
    out = tmp_path / "dpo"
    command = [
        sys.executable, DPO, "--config", os.path.join(DEMO, "dpo.yaml"), "--model_name_or_path", tiny_unit_lm_dir,
        "--output_dir", str(out), "--max_steps", "30", "--logging_steps", "1", "--eval_strategy", "no",
        "--save_strategy", "no", "--disable_tqdm", "true",
    ]  # fmt: skip
    code, output = signal_after_logs(command, signal.SIGINT, logs=2)
    assert code == EXIT_PREEMPTED, output[-3000:]
    (checkpoint,) = [name for name in os.listdir(out) if name.startswith("checkpoint-")]
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(os.listdir(out / checkpoint))
    assert not (out / ".saving").exists()  # the staging folder is gone once training has ended
    assert "in progress" in (out / "README.md").read_text()  # the card TRL writes with each checkpoint


def test_a_save_cut_short_leaves_no_checkpoint_and_the_only_complete_one_survives(tmp_path, monkeypatch, caplog):
    """Checkpoints are written under output_dir/.saving and renamed when complete. A save that fails half-way (a full
    disk, at the optimizer file of the step-4 save) leaves no checkpoint-4, and checkpoint-2, the only complete one,
    survives save_total_limit 1; the resumed run removes the debris, continues from step 2 and ends with one checkpoint.
    """
    import torch

    out = tmp_path / "run"
    real_save, written, full_disk = torch.save, [], [True]

    def save(obj, f, *args, **kwargs):  # torch.save, watching the optimizer file of each checkpoint
        if isinstance(f, str) and os.path.basename(f) == "optimizer.pt":
            folder = os.path.dirname(f)
            written.append((folder, (out / os.path.basename(folder)).exists()))
            if folder.endswith("checkpoint-4") and full_disk[0]:
                raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    recipe = [PRETRAIN, "--config", os.path.join(DEMO, "pretrain.yaml"), *QUICK, "--max_steps", "6",
              "--save_strategy", "steps", "--save_steps", "2", "--output_dir", str(out)]  # fmt: skip
    with pytest.raises(OSError, match="No space left"):
        run_recipe(*recipe)
    staging = str(out / ".saving")
    assert written == [(f"{staging}/checkpoint-2", False), (f"{staging}/checkpoint-4", False)]
    assert [n for n in os.listdir(out) if n.startswith("checkpoint-")] == ["checkpoint-2"]
    assert {"trainer_state.json", "optimizer.pt"} <= set(os.listdir(out / "checkpoint-2"))
    assert (out / ".saving" / "checkpoint-4" / "model.safetensors").is_file()  # the half-written save
    first_losses = losses(out / "checkpoint-2")

    full_disk[0] = False
    with caplog.at_level("WARNING", logger="slam_recipes"):
        resumed = run_recipe(*recipe, "--resume_from_checkpoint", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Removing {staging}: a checkpoint whose save did not finish" in caplog.text
    assert written[2:] == [(f"{staging}/checkpoint-4", False), (f"{staging}/checkpoint-6", False)]
    resumed_losses = losses(out)
    assert sorted(resumed_losses) == [1, 2, 3, 4, 5, 6]
    assert {step: resumed_losses[step] for step in (1, 2)} == first_losses  # steps 1-2 from checkpoint-2's state
    assert [n for n in os.listdir(out) if n.startswith("checkpoint-")] == ["checkpoint-6"]
    assert not (out / ".saving").exists()


def test_resume_without_a_checkpoint_is_one_line_before_anything_runs(tmp_path):
    out = tmp_path / "empty"
    result = run_recipe(PRETRAIN, "--config", os.path.join(DEMO, "pretrain.yaml"), "--output_dir", str(out),
                        "--resume_from_checkpoint", "true")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: resume_from_checkpoint: no checkpoint-* folder in {out} to resume"
    )
    assert not out.exists()


def test_resume_latest_skips_a_half_written_checkpoint(tmp_path):
    from slam_recipes.training.checkpoints import latest_complete_checkpoint

    for step, complete in ((10, True), (20, True), (30, False)):  # a crash while checkpoint-30 was being written
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"\0")
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    with pytest.warns(UserWarning, match="checkpoint-30 is incomplete"):
        assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-20")


def test_downtime_counts_only_when_asked():
    from slam_recipes.training.budget import TimeBudgetCallback

    class State:
        global_step = 10
        stateful_callbacks = {"TimeBudgetCallback": {"attributes": {"elapsed_before": 100.0, "saved_at": 1000.0}}}

    for count, expected in ((False, 100.0), (True, 100.0 + 500.0)):
        callback = TimeBudgetCallback(3600, clock=lambda: 0.0, count_downtime=count, wall_clock=lambda: 1500.0)
        callback.on_train_begin(None, State(), None)
        assert callback.elapsed() == expected


def test_same_seed_same_data_same_loss_curve_and_overwrite_replaces_the_run(tmp_path):
    """Determinism on CPU: the same recipe run twice logs the same losses, step for step. The second run trains into
    the first one's folder: refused, then allowed with overwrite_output_dir, which removes the old checkpoints."""
    out = str(tmp_path / "run")
    recipe = [
        PRETRAIN,
        "--config",
        os.path.join(DEMO, "pretrain.yaml"),
        *QUICK,
        "--max_steps",
        "8",
        "--output_dir",
        out,
    ]
    first = run_recipe(*recipe, "--save_strategy", "steps", "--save_steps", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    curve = losses(out)
    assert [n for n in os.listdir(out) if n.startswith("checkpoint-")] == ["checkpoint-8"]  # save_total_limit 1
    assert run_recipe(*recipe).returncode == 2  # another run's folder
    again = run_recipe(*recipe, "--overwrite_output_dir", "true")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(curve) == 8 and losses(out) == curve
    assert not [n for n in os.listdir(out) if n.startswith("checkpoint-")]


def test_two_processes_keep_the_global_batch_stop_together_and_only_rank_0_writes(tmp_path):
    """torchrun, 2 CPU processes (gloo) of the demo recipe at half the per-device batch: the 1-process run's global
    batch of 16 rows; the time budget stops both ranks on the same step; the files are written once, by rank 0."""
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", PRETRAIN,
        "--config", os.path.join(DEMO, "pretrain.yaml"), "--output_dir", str(out), "--per_device_train_batch_size", "8",
        "--max_steps", "1000", "--time_budget", "6", "--logging_steps", "1", "--eval_strategy", "no",
        "--save_strategy", "steps", "--save_steps", "1000", "--disable_tqdm", "true", "--ddp_backend", "gloo",
        "--context_length", "512",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stops = [
        line.split("reached at step ")[1].split(":")[0]
        for line in result.stderr.splitlines()
        if "reached at step" in line
    ]
    assert len(stops) == 2 and stops[0] == stops[1]  # each rank logs its stop: the same step
    with open(out / "trainer_state.json") as f:
        state = json.load(f)
    assert state["global_step"] == int(stops[0]) < 1000
    first = next(h for h in state["log_history"] if "loss" in h)
    assert 16 * 480 <= first["num_input_tokens_seen"] <= 16 * 512  # 2 × 8 packed rows of the 512-token context
    with open(out / "run_summary.json") as f:
        assert json.load(f)["hardware"]["num_processes"] == 2
    assert result.stderr.count("Writing model shards: 100%") == 2  # the budget's checkpoint and the final save: rank 0
    checkpoint = out / f"checkpoint-{stops[0]}"  # written by both ranks, renamed into place once both had finished
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "trainer_state.json"} <= set(os.listdir(checkpoint))
    assert not (out / ".saving").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason='needs pip install -e ".[deepspeed]"')
def test_deepspeed_zero2_config_trains_on_cpu(tmp_path):
    """accelerate_configs/deepspeed_zero2.yaml as shipped, 2 CPU processes: the recipe trains (this caught
    cosine_with_min_lr needing `optimizer.defaults`, which DeepSpeed's ZeRO optimizer lacks)."""
    out = tmp_path / "ds"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        os.path.join(REPO, "accelerate_configs", "deepspeed_zero2.yaml"), "--num_processes", "2", PRETRAIN,
        "--config", os.path.join(DEMO, "pretrain.yaml"), "--output_dir", str(out), "--max_steps", "4",
        "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "2",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(losses(out)) == 4 and (out / "model.safetensors").is_file()
    # each rank's ZeRO optimizer shard, staged and renamed with the rest; save_total_limit 1 kept the last
    assert [n for n in os.listdir(out) if n.startswith("checkpoint-")] == ["checkpoint-4"]
    shards = os.listdir(out / "checkpoint-4" / "global_step4")
    assert len([n for n in shards if "optim_states" in n]) == 2 and not (out / ".saving").exists()


def test_a_resumed_run_replaces_the_checkpoints_it_writes_again_whole(tmp_path):
    """Resumed from checkpoint-2 while checkpoints 4 and 6 of the first attempt exist: the new saves of steps 4 and 6
    replace the old folders whole (nothing of the old ones is left inside), with the same content."""
    out = tmp_path / "run"
    recipe = [PRETRAIN, "--config", os.path.join(DEMO, "pretrain.yaml"), *QUICK, "--max_steps", "6",
              "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "3", "--output_dir", str(out)]  # fmt: skip
    assert run_recipe(*recipe).returncode == 0
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == [f"checkpoint-{s}" for s in (2, 4, 6)]
    first = losses(out / "checkpoint-6")
    (out / "checkpoint-6" / "left-over.txt").write_text("from the first attempt")
    resumed = run_recipe(*recipe, "--resume_from_checkpoint", str(out / "checkpoint-2"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == [f"checkpoint-{s}" for s in (2, 4, 6)]
    assert not (out / "checkpoint-6" / "left-over.txt").exists()
    assert losses(out / "checkpoint-6") == first
    assert not (out / ".saving").exists()


def test_the_best_checkpoint_is_named_where_it_ends_up(tmp_path):
    """save_strategy best: the save is decided after the evaluation; it is staged too, and the trainer state (the
    run's and the checkpoint's own) names the best checkpoint by its final folder, which load_best_model_at_end uses."""
    out = tmp_path / "best"
    result = run_recipe(
        PRETRAIN, "--config", os.path.join(DEMO, "pretrain.yaml"), *QUICK, "--max_steps", "4", "--output_dir",
        str(out), "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "best",
        "--metric_for_best_model", "loss", "--load_best_model_at_end", "true", "--benchmarks", "swuggy=data/demo/eval/swuggy.parquet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "trainer_state.json") as f:
        best = json.load(f)["best_model_checkpoint"]
    assert os.path.dirname(best) == str(out) and os.path.isdir(best)
    with open(os.path.join(best, "trainer_state.json")) as f:
        assert json.load(f)["best_model_checkpoint"] == best
    assert not (out / ".saving").exists()
