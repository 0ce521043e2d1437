import logging
import math

import pytest
from conftest import TINY_CONFIGS, write_config
from datasets import Dataset
from transformers import TrainerCallback

from slam_recipes.callbacks import BudgetSchedule, TimeBudgetCallback, build_callbacks, parse_time_budget
from slam_recipes.data import build_collator, pack
from slam_recipes.errors import ConfigError
from slam_recipes.model import build_unit_lm
from slam_recipes.trainer import UnitLMTrainer
from slam_recipes.training_args import PretrainConfig
from slam_recipes.units import build_unit_tokenizer


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("23:30:00", 84600),
        ("1-00:00:00", 86400),
        ("0:00:05", 5),
        ("90", 90),
        (90, 90),
        (1.5, 1.5),
        ("2-01:02:03", 176523),
    ],
)
def test_parse_time_budget(text, seconds):
    assert parse_time_budget(text) == seconds


@pytest.mark.parametrize("text", ["23:30", "abc", "1:60:00", "-5", "0", "", "1-2", True])
def test_malformed_time_budget(text):
    with pytest.raises(ConfigError, match="time_budget .* is malformed"):
        parse_time_budget(text)


def test_budget_schedule_shape():
    schedule = BudgetSchedule(horizon=100, warmup=0.1, min_lr_ratio=0.05, kind="cosine_with_min_lr")
    assert schedule(0) == 0.0 and schedule(5) == 0.5 and schedule(10) == 1.0
    assert schedule(55) == pytest.approx(0.05 + 0.95 * 0.5)
    assert schedule(100) == pytest.approx(0.05) and schedule(150) == pytest.approx(0.05)
    schedule.horizon = 200  # re-estimated horizon: the same curve, stretched
    assert schedule(100) > 0.5 and schedule(200) == pytest.approx(0.05)
    assert BudgetSchedule(10, 0, 0.0, "linear")(5) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="cannot be fitted"):
        BudgetSchedule(10, kind="polynomial")


def test_unknown_callback_name():
    with pytest.raises(ConfigError, match=r"unknown callback\(s\) \['early_stop'\]"):
        build_callbacks(["early_stop"], None)


class FakeClock:
    def __init__(self, start=0.0):
        self.now = start

    def __call__(self):
        return self.now


class Tick(TrainerCallback):
    """Each training step takes `seconds` on the fake clock."""

    def __init__(self, clock, seconds=1.0):
        self.clock, self.seconds = clock, seconds

    def on_step_begin(self, args, state, control, **kwargs):
        self.clock.now += self.seconds


class StopAt(TrainerCallback):
    """Simulates a preemption: checkpoint and stop at `step`."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


def make_trainer(tmp_path, clock, budget="10", extra_callbacks=(), step_time_window=50, **overrides):
    model = build_unit_lm(write_config(tmp_path / "cfg", TINY_CONFIGS["qwen2"]), twist_init=False)
    rows = [[1] + [2 + (i * 7 + j) % 40 for j in range(20)] + [1] for i in range(64)]
    data = pack(Dataset.from_dict({"input_ids": rows}), 64, "padding_free")
    options = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        num_train_epochs=100,
        learning_rate=1e-3,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr": 1e-5},
        warmup_steps=0.1,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=1000,
        save_strategy="steps",
        save_steps=1000,
        report_to="none",
        time_budget=budget,
        use_cpu=True,
        disable_tqdm=True,
    )
    options.update(overrides)
    args = PretrainConfig(**options)
    budget_callback = TimeBudgetCallback(parse_time_budget(budget), clock=clock, step_time_window=step_time_window)
    trainer = UnitLMTrainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data.select(range(4)),
        data_collator=build_collator("padding_free"),
        processing_class=build_unit_tokenizer(500),
        callbacks=[Tick(clock), budget_callback, *extra_callbacks],
    )
    return trainer, budget_callback


def test_budget_stops_evaluates_saves_and_reaches_min_lr(tmp_path):
    clock = FakeClock()
    trainer, budget = make_trainer(tmp_path, clock)
    trainer.flops_per_token, trainer.peak_flops = 2.0e6, 1.0e12
    trainer.train()
    assert trainer.state.global_step == 10 and budget.stopped_at_step == 10
    history = trainer.state.log_history
    assert any("eval_loss" in h and h["step"] == 10 for h in history)
    assert (tmp_path / "out" / "checkpoint-10").is_dir()
    # The schedule is at its floor exactly at the deadline; the last update used the value one step before it.
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(1e-5)
    lrs = [h["learning_rate"] for h in history if "learning_rate" in h]
    assert lrs[-1] < 5e-5
    assert max(lrs) == pytest.approx(1e-3, rel=0.05)
    peak = lrs.index(max(lrs))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False))
    # Throughput is logged with the losses: tokens/s, and MFU = tokens/s × FLOPs/token / peak FLOP/s.
    logged = [h for h in history if "loss" in h and h["step"] > 1]
    assert all(h["tokens_per_second"] > 0 for h in logged)
    assert all(h["mfu"] == pytest.approx(h["tokens_per_second"] * 2.0e6 / 1.0e12, rel=1e-2, abs=1e-4) for h in logged)
    assert history[-1]["num_input_tokens_seen"] > 0


def test_resume_keeps_the_original_deadline(tmp_path):
    trainer, _ = make_trainer(tmp_path, FakeClock(), extra_callbacks=[StopAt(4)])
    trainer.train()
    assert trainer.state.global_step == 4 and (tmp_path / "out" / "checkpoint-4").is_dir()

    clock = FakeClock(start=5000.0)  # another machine, another clock
    trainer, budget = make_trainer(tmp_path, clock, resume_from_checkpoint="latest")
    assert trainer.args.resume_from_checkpoint == str(tmp_path / "out" / "checkpoint-4")
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    assert budget.elapsed_before == pytest.approx(4.0)
    assert trainer.state.global_step == 10  # 4 s spent before + 6 steps of 1 s
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(1e-5)


def test_max_steps_first_uses_the_plain_schedule(tmp_path):
    trainer, budget = make_trainer(tmp_path, FakeClock(), budget="100", max_steps=5)
    trainer.train()
    assert trainer.state.global_step == 5 and budget.stopped_at_step is None
    assert not any(isinstance(fn, BudgetSchedule) for fn in trainer.lr_scheduler.lr_lambdas)


def test_budget_first_with_max_steps_warns(tmp_path, caplog):
    trainer, budget = make_trainer(tmp_path, FakeClock(), budget="10", max_steps=50)
    with caplog.at_level(logging.WARNING, logger="slam_recipes.callbacks"):
        trainer.train()
    assert trainer.state.global_step == 10 and budget.stopped_at_step == 10
    assert any("looks too short for max_steps=50" in r.getMessage() for r in caplog.records)


def test_horizon_follows_the_measured_step_time(tmp_path):
    """Slower steps than the first estimate: the horizon shrinks so the floor still lands on the deadline."""
    clock = FakeClock()

    class SlowDown(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.now += 1.0 if state.global_step < 5 else 2.0  # Tick adds 1 s more: 2 s, then 3 s per step

    trainer, budget = make_trainer(tmp_path, clock, budget="40", extra_callbacks=[SlowDown()], step_time_window=4)
    trainer.train()
    # 5 steps × 2 s = 10 s, then 3 s per step: the deadline (40 s) falls in step 15.
    assert trainer.state.global_step == 15
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(1e-5, rel=1e-3)
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert lrs[-1] < 1e-4 and not math.isclose(lrs[-2], 1e-5)
