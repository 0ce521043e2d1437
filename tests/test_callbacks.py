import logging
import math

import pytest
from conftest import TINY_CONFIGS, write_config
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from slam_recipes.data.packing import build_collator, pack
from slam_recipes.errors import ConfigError
from slam_recipes.modeling.unit_lm import build_unit_lm
from slam_recipes.training.arguments import PretrainConfig
from slam_recipes.training.budget import BudgetSchedule, TimeBudgetCallback, parse_time_budget
from slam_recipes.training.callbacks import build_callbacks
from slam_recipes.training.trainer import UnitLMTrainer
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


class Pauses(TrainerCallback):
    """Each evaluation takes `evaluate` seconds and each save `save` seconds on the fake clock (placed before the
    budget callback, so it sees them as they happen)."""

    def __init__(self, clock, evaluate=0.0, save=0.0, first_step=0.0):
        self.clock, self.evaluate, self.save, self.first_step = clock, evaluate, save, first_step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:  # compilation, cache warm-up
            self.clock.now += self.first_step

    def on_evaluate(self, args, state, control, **kwargs):
        self.clock.now += self.evaluate

    def on_save(self, args, state, control, **kwargs):
        self.clock.now += self.save


def make_trainer(
    tmp_path, clock, budget="10", extra_callbacks=(), step_time_window=50, before_budget=(), extras=None, **overrides
):
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
        callbacks=[Tick(clock), *before_budget, budget_callback, *extra_callbacks],
        **(extras or {}),
    )
    return trainer, budget_callback


def test_budget_stops_evaluates_saves_and_reaches_min_lr(tmp_path):
    clock = FakeClock()
    trainer, budget = make_trainer(tmp_path, clock, extras={"flops_per_token": 2.0e6, "peak_flops": 1.0e12})
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


def test_tokens_per_second_spans_the_whole_run_across_a_resume(tmp_path):
    """Issue 20, part 3. 4 steps of 1 s, a checkpoint, a restart on another clock, 6 more steps of 1 s: the run's
    tokens/s is every token seen over 10 s of training (2 sessions), not over the second session's time. Before the
    fix it divided the tokens since the first start by the runtime since the resume."""
    from slam_recipes.training.budget import TrainingClockCallback
    from slam_recipes.training.records import run_summary

    clock = FakeClock()
    trainer, _ = make_trainer(tmp_path, clock, extra_callbacks=[StopAt(4), TrainingClockCallback(clock)])
    trainer.train()
    tokens_at_checkpoint = trainer.state.num_input_tokens_seen
    clock = FakeClock(start=5000.0)
    trainer, _ = make_trainer(
        tmp_path,
        clock,
        resume_from_checkpoint="latest",
        extra_callbacks=[TrainingClockCallback(clock)],
        extras={"flops_per_token": 2.0e6, "peak_flops": 1.0e12},
    )
    metrics = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint).metrics
    # the tokens of each session, counted from the logs of the steps (a second path: the logged running totals)
    seen = [h["num_input_tokens_seen"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 10 and seen[3] == tokens_at_checkpoint and seen[-1] > tokens_at_checkpoint
    training = run_summary(trainer, metrics)["training"]
    assert training["tokens_seen"] == seen[-1] and training["sessions"] == 2
    assert training["wall_time_seconds"] == pytest.approx(10.0)
    assert training["tokens_per_second"] == pytest.approx(seen[-1] / 10.0, abs=0.05)
    assert training["mfu"] == pytest.approx(seen[-1] / 10.0 * 2.0e6 / 1.0e12, abs=1e-4)


def test_the_progress_bar_ends_at_the_budget(tmp_path, capsys):
    """With tqdm on, the bar's total is the step the budget is expected to end at (10: ten 1-s steps in 10 s), not
    the 100 epochs' 1,600 steps, from the second step on (the first estimate), and the bar ends full."""
    import re

    from slam_recipes.training.budget import BudgetProgressCallback

    trainer, budget = make_trainer(tmp_path, FakeClock(), disable_tqdm=False)
    bars = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ProgressCallback)]
    assert len(bars) == 1 and isinstance(bars[0], BudgetProgressCallback) and bars[0].budget is budget
    trainer.train()
    assert trainer.state.global_step == 10 and trainer.state.max_steps == 1600
    shown = [(int(n), int(total)) for n, total in re.findall(r"(\d+)/(\d+) \[", capsys.readouterr().err)]
    training = shown[shown.index((0, 1600)) :]  # after the data preparation's bars; evaluation's are (k, 1)
    assert training[1] == (1, 1600) and training[-1] == (10, 10)
    assert {total for n, total in training if n >= 2} == {10}


def test_max_steps_first_uses_the_plain_schedule(tmp_path):
    trainer, budget = make_trainer(tmp_path, FakeClock(), budget="100", max_steps=5)
    trainer.train()
    assert trainer.state.global_step == 5 and budget.stopped_at_step is None
    assert not any(isinstance(fn, BudgetSchedule) for fn in trainer.lr_scheduler.lr_lambdas)


@pytest.mark.parametrize("text", ["none", "Null"])
def test_none_clears_a_recipes_budget(tmp_path, text):
    """`--time_budget none` on the command line removes the budget a recipe file sets: no deadline, no callback."""
    args = PretrainConfig(output_dir=str(tmp_path), time_budget=text, use_cpu=True, report_to="none")
    assert args.time_budget is None and args.time_budget_seconds is None
    assert not any(isinstance(cb, TimeBudgetCallback) for cb in build_callbacks(args.callbacks, args))
    assert PretrainConfig(output_dir=str(tmp_path), time_budget="90", use_cpu=True).time_budget_seconds == 90


def test_budget_first_with_max_steps_warns(tmp_path, caplog):
    trainer, budget = make_trainer(tmp_path, FakeClock(), budget="10", max_steps=50)
    with caplog.at_level(logging.WARNING, logger="slam_recipes.training.budget"):
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


def _learning_rates(trainer) -> list[float]:
    """The LR of each step's update (step k logs the schedule's value at k − 1), then the one after the last step."""
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h and "loss" in h]
    return logged + trainer.lr_scheduler.get_last_lr()


def _rises_then_never_rises(lrs: list[float], warmup: int) -> bool:
    """lrs[i] = the schedule at step i: strictly rising from 0 to the peak at `warmup`, non-increasing after it."""
    rising = all(a < b for a, b in zip(lrs[:warmup], lrs[1 : warmup + 1], strict=True))
    after = lrs[warmup:]
    return rising and lrs[warmup] == max(lrs) and all(a >= b for a, b in zip(after, after[1:], strict=False))


def test_evaluation_and_save_pauses_are_not_slow_steps(tmp_path):
    """Issue 20, part 2. 1 s steps, a 5 s evaluation after every 10th step and a 2 s save after every 20th, in a 60 s
    budget: step k ends at k + 5·⌊(k−1)/10⌋ + 2·⌊(k−1)/20⌋ s, so step 40 ends at 57 s and step 41 (after the
    evaluation and the save of step 40) at 65 s: 41 steps. Before the fix the step-time window counted each pause as
    a slow step: the LR dipped after every evaluation and came back up."""
    clock = FakeClock()
    pauses = Pauses(clock, evaluate=5.0, save=2.0)
    trainer, budget = make_trainer(
        tmp_path, clock, budget="60", before_budget=[pauses], eval_steps=10, save_steps=20, step_time_window=5
    )
    trainer.train()
    assert trainer.state.global_step == 41 and budget.stopped_at_step == 41
    lrs = _learning_rates(trainer)
    # warmup fixed at step 2: 58 s left at 1 s per step (no pause seen yet) → horizon 60 → 10 % = 6 steps
    assert _rises_then_never_rises(lrs, 6), lrs
    assert lrs[-1] == pytest.approx(1e-5)  # the floor after the last step: the pauses of step 40 were foreseen
    # evaluations after steps 10, 20, 30, 40 and the budget's own at the end; saves after 20, 40 and at the end
    assert budget.pauses == {"eval": [25.0, 5], "save": [6.0, 3]}


def test_a_slow_first_step_does_not_stretch_the_warmup(tmp_path):
    """Issue 20, part 2. The first step takes 21 s (20 s of compilation), the others 1 s, in a 100 s budget: step k
    ends at 20 + k s, so 80 steps, and the warmup is 10 % of them, 8 steps, fixed once at step 2. Before the fix the
    horizon first came from the slow step (5 steps: a 1-step warmup, then decay) and then grew to 80, so the LR fell
    back into a warmup (0.85 of peak at step 2, 3/8 at step 3)."""
    clock = FakeClock()
    trainer, budget = make_trainer(tmp_path, clock, budget="100", before_budget=[Pauses(clock, first_step=20.0)])
    trainer.train()
    assert trainer.state.global_step == 80
    lrs = _learning_rates(trainer)
    assert _rises_then_never_rises(lrs, 8), lrs
    assert lrs[8] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)


def test_last_step_before_the_deadline():
    from slam_recipes.training.budget import last_step_before

    assert last_step_before(2, 118.0, 1.0, []) == 120
    assert last_step_before(2, 118.5, 1.0, []) == 121  # the step that crosses the deadline is the last
    # after step 80 (10 s left): its own evaluation (10 s) and save (5 s) come first, so step 81 is the last
    assert last_step_before(80, 10.0, 1.0, [(20, 10.0), (40, 5.0)]) == 81
    # after step 20 (90 s left, an evaluation of 10 s after steps 20, 40, 60): 60 steps + 30 s of pauses
    assert last_step_before(20, 90.0, 1.0, [(20, 10.0)]) == 80
    assert last_step_before(5, 0.0, 1.0, []) == 5 and last_step_before(5, 10.0, 0.0, []) is None


def test_refit_continues_the_decay_from_where_it_is():
    schedule = BudgetSchedule(horizon=100, warmup=10, min_lr_ratio=0.0, kind="linear")
    assert schedule(55) == pytest.approx(0.5)
    schedule.refit(55, 200)  # more steps fit than thought: the rest of the decay is spread over them
    assert schedule(55) == pytest.approx(0.5) and schedule(200) == pytest.approx(0.0)
    assert schedule(127.5) == pytest.approx(0.25)
    schedule.refit(100, 120)  # fewer: the decay steepens, it never goes back up
    assert schedule(100) == pytest.approx(0.5 - 0.5 * 45 / 145) and schedule(120) == pytest.approx(0.0)
    ratio = BudgetSchedule(horizon=1000, warmup=0.1)
    assert ratio.warmup_steps() == 100
    ratio.refit(2, 50)
    assert ratio.fix_warmup(2) == 5 and ratio.warmup_steps() == 5
    ratio.refit(3, 5000)  # a later horizon leaves the fixed warmup alone
    assert ratio.warmup_steps() == 5 and BudgetSchedule(10, warmup=0.1).fix_warmup(4) == 4
