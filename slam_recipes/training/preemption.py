"""Preemption: on SIGTERM or SIGINT, checkpoint at the end of the step and stop, exiting with EXIT_PREEMPTED so a
scheduler can requeue the run with resume_from_checkpoint."""

from __future__ import annotations

import logging
import signal
import threading

from transformers import TrainerCallback

from slam_recipes.training.budget import agree_across_processes

logger = logging.getLogger(__name__)

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after writing a checkpoint; rerun with resume_from_checkpoint


class PreemptionCallback(TrainerCallback):
    """SIGTERM or SIGINT during training → a checkpoint at the end of the current step, then training stops (the
    recipe then exits with `EXIT_PREEMPTED`). Any rank's signal stops every rank on the same step. A second signal
    while the step finishes gets the default behaviour (e.g. Ctrl-C twice interrupts at once)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None  # the signal number, once one arrived
        self.preempted_at_step: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum
        for sig, handler in self._previous.items():  # a second signal is not caught
            signal.signal(sig, handler)
        logger.warning(
            "Received %s: checkpointing at the end of this step, then stopping", signal.Signals(signum).name
        )

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return control

    def on_step_end(self, args, state, control, **kwargs):
        (requested,) = agree_across_processes([float(self.received is not None)], args.device, "max")
        if requested:
            self.preempted_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False
        return control

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, handler)
        self._previous = {}
        return control
