"""Training time: the time budget (stop at the deadline, with the last evaluation and save; fit the learning-rate
schedule's horizon to the budget, with evaluations and saves as pauses) and the training clock (training seconds
over every session of a resumed run), both kept in checkpoints."""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState, ProgressCallback, TrainerState

from slam_recipes.errors import ConfigError

logger = logging.getLogger(__name__)

_BUDGET_RE = re.compile(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)")
STEP_TIME_WINDOW = 50  # steps averaged for the step time: recent enough to follow a change of speed
BUDGET_SCHEDULES = ("cosine", "cosine_with_min_lr", "linear", "constant_with_warmup")


def parse_time_budget(value: str | int | float | None) -> float | None:
    """`"23:30:00"`, `"1-00:00:00"` (days-hh:mm:ss), `"90"` or `90` (seconds) → seconds; None → None."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        match = _BUDGET_RE.fullmatch(text)
        if match:
            days, hours, minutes, secs = match.groups()
            if int(minutes) < 60 and float(secs) < 60:
                seconds = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)
        else:
            try:
                seconds = float(text)
            except ValueError:
                seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"time_budget {value!r} is malformed: use 'HH:MM:SS', 'D-HH:MM:SS' or a positive number of seconds"
        )
    return seconds


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class BudgetSchedule:
    """LR multiplier with an adjustable horizon: linear warmup, then cosine (or linear) decay to `min_lr_ratio` at
    step `horizon`. A callable object, so `LambdaLR.state_dict()` saves its state with each checkpoint.

    - `warmup`: steps (≥ 1) or a ratio of the horizon. A ratio is turned into steps once by `fix_warmup`, when the
      horizon is first estimated from a measured step time; until then it follows the horizon.
    - `refit(step, horizon)`: a new horizon estimate at `step`. The decay goes on from the progress already reached at
      `step` and reaches the floor at the new horizon, so after warmup the multiplier never increases, whatever the
      estimates do; setting `horizon` directly stretches the whole curve instead.
    """

    def __init__(self, horizon: int, warmup: float = 0.0, min_lr_ratio: float = 0.0, kind: str = "cosine"):
        if kind not in BUDGET_SCHEDULES:
            raise ConfigError(
                f"lr_scheduler_type {kind!r} cannot be fitted to a time budget; use one of {BUDGET_SCHEDULES}"
            )
        self.horizon = max(1, int(horizon))
        self.warmup = float(warmup)
        self.min_lr_ratio = float(min_lr_ratio)
        self.kind = kind
        self.fixed_warmup: int | None = int(self.warmup) if self.warmup >= 1 else None
        self.anchor_step = 0  # the decay's progress is `anchor_progress` at `anchor_step` (or at the warmup's end)
        self.anchor_progress = 0.0

    def warmup_steps(self) -> int:
        if self.fixed_warmup is not None:
            return self.fixed_warmup
        return math.ceil(self.horizon * self.warmup)

    def fix_warmup(self, step: int = 0) -> int:
        """Turn a warmup ratio into steps of the current horizon, once, at `step`; later horizons leave it alone. A
        warmup that should have ended before `step` ends at `step` (the steps so far were warming up)."""
        if self.fixed_warmup is None:
            self.fixed_warmup = max(self.warmup_steps(), step)
        return self.fixed_warmup

    def progress(self, step: int) -> float:
        """The decay's progress at `step`, 0 at the warmup's end and 1 at the horizon."""
        start = max(self.anchor_step, self.warmup_steps())
        if step <= start:  # (earlier steps than the anchor are not asked for: the scheduler only moves forward)
            return self.anchor_progress
        return self.anchor_progress + (1.0 - self.anchor_progress) * min(
            1.0, (step - start) / max(1, self.horizon - start)
        )

    def refit(self, step: int, horizon: int) -> None:
        """A new horizon, estimated at `step`: the decay continues from where it is at `step`."""
        if step > self.warmup_steps():
            self.anchor_progress, self.anchor_step = self.progress(step), step
        self.horizon = max(1, int(horizon), step)

    def __call__(self, step: int) -> float:
        warmup = self.warmup_steps()
        if step < warmup:
            return step / max(1, warmup)
        if self.kind == "constant_with_warmup":
            return 1.0
        progress = self.progress(step)
        decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if self.kind != "linear" else 1.0 - progress
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * decay


def min_lr_ratio(lr_scheduler_type: str, learning_rate: float, scheduler_kwargs: dict | None) -> float:
    """The floor of the schedule as a fraction of the peak LR (`min_lr` or `min_lr_rate`, as transformers names them)."""
    kwargs = scheduler_kwargs or {}
    if lr_scheduler_type != "cosine_with_min_lr":
        return 0.0
    if kwargs.get("min_lr_rate") is not None:
        return float(kwargs["min_lr_rate"])
    if kwargs.get("min_lr") is not None:
        return float(kwargs["min_lr"]) / learning_rate
    raise ConfigError("lr_scheduler_type cosine_with_min_lr needs lr_scheduler_kwargs.min_lr or min_lr_rate")


def _budget_schedule(lr_scheduler) -> BudgetSchedule | None:
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate wraps schedulers
    for fn in getattr(scheduler, "lr_lambdas", []):
        if isinstance(fn, BudgetSchedule):
            return fn
    return None


def agree_across_processes(values: list[float], device, how: str) -> list[float]:
    """The same values on every rank, so all ranks take the same decision on the same step: rank 0's (`how="main"`)
    or the maximum over ranks (`how="max"`: a flag raised on any rank is raised on all)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    if torch.distributed.get_world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if how == "main":
        torch.distributed.broadcast(tensor, src=0)
    else:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return tensor.tolist()


def last_step_before(step: int, remaining: float, step_time: float, pauses: list[tuple[int, float]]) -> int | None:
    """The step whose end first reaches the deadline, `remaining` seconds after the end of `step`, when each step
    takes `step_time` seconds and after every step that is a multiple of `every` a pause of `seconds` follows, for
    each (every, seconds) of `pauses` (the pauses after `step` itself are still to come). None without a step time."""
    if remaining <= 0:
        return step
    if step_time <= 0:
        return None

    def time_to_end_of(last: int) -> float:
        paused = sum(seconds * ((last - 1) // every - (step - 1) // every) for every, seconds in pauses)
        return (last - step) * step_time + paused

    # the time grows with the step: the first step whose end reaches the deadline, by bisection
    low, high = step + 1, step + max(1, math.ceil(remaining / step_time - 1e-9))
    while low < high:
        middle = (low + high) // 2
        if time_to_end_of(middle) >= remaining - 1e-9:
            high = middle
        else:
            low = middle + 1
    return low


def saved_attributes(callback: ExportableState, state: TrainerState) -> dict | None:
    """The attributes `callback` saved in the checkpoint being resumed (its `state()`), or None on a fresh start."""
    saved = state.stateful_callbacks.get(type(callback).__name__)
    if isinstance(saved, list):
        saved = saved[0] if saved else None
    return saved.get("attributes", {}) if saved and state.global_step > 0 else None


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Stop training at the time budget: the step that crosses it is the last one, then evaluate and save.

    - Time counts from `on_train_begin` (data preparation and model loading are outside the budget). The elapsed
      budget is saved in every checkpoint (`trainer_state.json`), so a resumed run keeps the original deadline.
    - Rank 0 decides and broadcasts, so every rank stops on the same step.
    - Without `max_steps`, the LR schedule's horizon (a `BudgetSchedule`) is re-estimated after every step, so the
      decay reaches its floor at the deadline. The estimate divides the remaining time by the mean time of the recent
      steps plus the pauses expected per step. Pauses (evaluation, saving) are timed apart from the steps: each kind
      costs its mean measured duration once per `eval_steps` / `save_steps` (or, for other strategies, its measured
      total spread over the session's steps). The session's first step (compilation, cache warm-up) is left out, and
      the horizon is first estimated after the second step, when a warmup ratio is also fixed in steps. After warmup
      the LR never increases (see `BudgetSchedule.refit`).
    - With `max_steps`, training ends at whichever comes first, with a warning once the step time shows the budget
      is too short.
    - `expected_last_step`: the step at which training is expected to end (the estimate above, capped by
      `max_steps`), None until the second step; what `BudgetProgressCallback` shows.
    """

    def __init__(
        self,
        budget_seconds: float,
        clock: Callable[[], float] | None = None,
        step_time_window: int = STEP_TIME_WINDOW,
        count_downtime: bool = False,
        wall_clock: Callable[[], float] | None = None,
    ):
        self.budget_seconds = float(budget_seconds)
        self.clock = clock or time.monotonic
        self.count_downtime = count_downtime  # on resume, the time between the checkpoint and the restart counts too
        self.wall_clock = wall_clock or time.time  # comparable across processes (the checkpoint's stamp)
        self.elapsed_before = 0.0  # budget spent by earlier sessions of this run (restored on resume)
        self.session_start: float | None = None
        self.session_start_step = 0
        self.recent_step_times: deque[float] = deque(maxlen=step_time_window)
        self.pause_mark: float | None = None  # the end of the last step or of the pause that followed it
        self.pauses: dict[str, list[float]] = {"eval": [0.0, 0], "save": [0.0, 0]}  # kind → [seconds, count]
        self.stopped_at_step: int | None = None
        self.expected_last_step: int | None = None
        self._warned = False

    # -- ExportableState --------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "args": {"budget_seconds": self.budget_seconds},
            "attributes": {"elapsed_before": self.elapsed(), "saved_at": self.wall_clock()},
        }

    # -- clock ------------------------------------------------------------------------------------------------------
    def elapsed(self, now: float | None = None) -> float:
        if self.session_start is None:
            return self.elapsed_before
        return self.elapsed_before + ((self.clock() if now is None else now) - self.session_start)

    def remaining(self, now: float | None = None) -> float:
        return self.budget_seconds - self.elapsed(now)

    # -- events -----------------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        attributes = saved_attributes(self, state)
        if attributes is not None:  # resuming: keep the deadline of the original start
            self.elapsed_before = float(attributes.get("elapsed_before", 0.0))
            if self.count_downtime and attributes.get("saved_at") is not None:
                self.elapsed_before += max(0.0, self.wall_clock() - float(attributes["saved_at"]))
        self.session_start = self.clock()
        self.session_start_step = state.global_step
        self.pause_mark = None
        self.recent_step_times.clear()
        self.pauses = {"eval": [0.0, 0], "save": [0.0, 0]}
        logger.info(
            "Time budget %s, %s already spent, deadline in %s",
            format_seconds(self.budget_seconds),
            format_seconds(self.elapsed_before),
            format_seconds(self.remaining()),
        )
        return control

    def _pause(self, kind: str) -> None:
        """An evaluation or a save has just ended: its time since the step (or the pause before it) is a pause."""
        now = self.clock()
        if self.pause_mark is not None:
            self.pauses[kind][0] += now - self.pause_mark
            self.pauses[kind][1] += 1
            self.pause_mark = now

    def on_evaluate(self, args, state, control, **kwargs):
        self._pause("eval")
        return control

    def on_save(self, args, state, control, **kwargs):
        self._pause("save")
        return control

    def expected_pauses(self, args, state) -> tuple[list[tuple[int, float]], float]:
        """The pauses to expect, from those measured so far: (every n steps, mean seconds) for evaluations and saves
        on a `steps` strategy, and seconds per step for the others (their measured total over the session's steps)."""
        periodic, per_step = [], 0.0
        for kind, (seconds, count) in self.pauses.items():
            if not count:
                continue
            strategy = getattr(args, f"{kind}_strategy")
            every = getattr(state, f"{kind}_steps", 0) if getattr(strategy, "value", strategy) == "steps" else 0
            if every:
                periodic.append((int(every), seconds / count))
            else:
                per_step += seconds / max(1, state.global_step - self.session_start_step)
        return periodic, per_step

    def on_step_end(self, args, state, control, **kwargs):
        now = self.clock()
        steps = state.global_step - self.session_start_step
        if self.pause_mark is not None:  # the session's first step (warm-up, compilation) is left out
            self.recent_step_times.append(now - self.pause_mark)
        self.pause_mark = now
        remaining = self.remaining(now)
        horizon = state.max_steps
        step_time = 0.0
        if self.recent_step_times:
            step_time = sum(self.recent_step_times) / len(self.recent_step_times)
            periodic, per_step = self.expected_pauses(args, state)
            horizon = last_step_before(state.global_step, remaining, step_time + per_step, periodic) or horizon
        stop, horizon = agree_across_processes([float(remaining <= 0), float(horizon)], args.device, "main")

        cap = state.max_steps if state.max_steps and state.max_steps > 0 else math.inf
        if self.recent_step_times:
            self.expected_last_step = int(min(horizon, cap))
        schedule = _budget_schedule(kwargs.get("lr_scheduler"))
        if schedule is not None and self.recent_step_times:
            schedule.refit(state.global_step, int(min(horizon, cap)))
            schedule.fix_warmup(state.global_step)
        if args.max_steps > 0 and steps == 2 and not self._warned and horizon < args.max_steps:
            self._warned = True
            logger.warning(
                "time_budget %s looks too short for max_steps=%d: at %.3g s/step it ends near step %d",
                format_seconds(self.budget_seconds),
                args.max_steps,
                step_time,
                int(horizon),
            )
        if stop:
            self.stopped_at_step = self.expected_last_step = state.global_step
            logger.warning(
                "Time budget %s reached at step %d: stopping, evaluating and saving",
                format_seconds(self.budget_seconds),
                state.global_step,
            )
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"
            control.should_evaluate = args.eval_strategy != "no"
        return control


class BudgetProgressCallback(ProgressCallback):
    """transformers' training progress bar, whose total is the step at which the time budget is expected to end
    (`TimeBudgetCallback.expected_last_step`, re-estimated every step) instead of the step count of
    `num_train_epochs`, which a run sized by its budget never reaches: the bar's remaining time is then the budget's
    (a demo's 7 min 30 s, not hours). Until the estimate exists (the first two steps) it is the Trainer's own."""

    def __init__(self, budget: TimeBudgetCallback):
        super().__init__()
        self.budget = budget

    def on_step_end(self, args, state, control, **kwargs):
        expected = self.budget.expected_last_step
        if self.training_bar is not None and expected is not None and self.training_bar.total != expected:
            self.training_bar.total = expected
        return super().on_step_end(args, state, control, **kwargs)


class TrainingClockCallback(TrainerCallback, ExportableState):
    """Training time and tokens over all sessions of a run, so that a resumed run's tokens/s divides the tokens seen
    since the first start by the time spent since the first start (not by the last session's time).

    The training seconds reached at each checkpoint are saved in it (`trainer_state.json`); on resume they are
    restored. The steps a preemption lost after the checkpoint count in neither the tokens (the state of the
    checkpoint) nor the time. A session runs from `on_train_begin` to `on_train_end`; evaluations and saves during
    training count, as in the Trainer's `train_runtime`.
    """

    def __init__(self, clock: Callable[[], float] | None = None):
        self.clock = clock or time.perf_counter
        self.seconds_before = 0.0  # training seconds of the earlier sessions, up to the checkpoint resumed from
        self.sessions_before = 0
        self.session_start: float | None = None
        self.session_end: float | None = None

    def state(self) -> dict:
        return {"args": {}, "attributes": {"seconds": self.seconds(), "sessions": self.sessions_before + 1}}

    def seconds(self) -> float:
        """Training seconds of the run so far (to the end of training, once it has ended)."""
        if self.session_start is None:
            return self.seconds_before
        end = self.session_end if self.session_end is not None else self.clock()
        return self.seconds_before + end - self.session_start

    def sessions(self) -> int:
        return self.sessions_before + (self.session_start is not None)

    def on_train_begin(self, args, state, control, **kwargs):
        attributes = saved_attributes(self, state)
        if attributes is not None:
            self.seconds_before = float(attributes.get("seconds", 0.0))
            self.sessions_before = int(attributes.get("sessions", 1))
        self.session_start, self.session_end = self.clock(), None
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.session_end = self.clock()
        return control


def build_time_budget_callback(args) -> TimeBudgetCallback | None:
    budget = parse_time_budget(args.time_budget)
    count_downtime = bool(getattr(args, "time_budget_count_downtime", False))
    return TimeBudgetCallback(budget, count_downtime=count_downtime) if budget is not None else None
