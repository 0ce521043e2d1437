"""Checkpoints written under a staging folder and renamed into place when complete, so an interrupted save never
leaves a checkpoint that looks whole; rotation and the latest complete checkpoint for resuming."""

from __future__ import annotations

import logging
import os
import shutil
import warnings

from accelerate import PartialState
from transformers import TrainerCallback
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import rotate_checkpoints

from slam_recipes.files import atomic_path

logger = logging.getLogger(__name__)

# -- checkpoints on disk ------------------------------------------------------------------------------------------------
STAGING_DIR = ".saving"  # under output_dir: checkpoints are written here, then renamed into place when complete


def staging_dir(output_dir: str) -> str:
    return os.path.join(output_dir, STAGING_DIR)


def checkpoint_folders(output_dir: str) -> list[tuple[int, str, bool]]:
    """(step, folder, complete) of each `checkpoint-<step>` folder of output_dir, by step. Complete: its save finished,
    i.e. it holds trainer_state.json, which the Trainer writes last. (The recipes' own checkpoints are always complete,
    see `StagedCheckpointCallback`; this also covers folders written by a plain Trainer or an older version.)"""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        folder, step = os.path.join(output_dir, name), name.removeprefix("checkpoint-")
        if name != step and step.isdigit() and os.path.isdir(folder):
            found.append((int(step), folder, os.path.isfile(os.path.join(folder, "trainer_state.json"))))
    return sorted(found)


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The highest-step complete checkpoint of output_dir; a newer one a crash left half-written is skipped with a
    warning."""
    for _, folder, complete in reversed(checkpoint_folders(output_dir)):
        if complete:
            return folder
        warnings.warn(f"{folder} is incomplete (no trainer_state.json): not resumed from", stacklevel=2)
    return None


def clear_checkpoints(output_dir: str, all_of_them: bool = False) -> None:
    """Before training: remove the staging folder of a save a crash cut short, and any checkpoint left half-written,
    so that neither `resume_from_checkpoint: true` nor `save_total_limit`'s rotation (which keeps the newest) ever
    takes one for a checkpoint; with `all_of_them` (overwrite_output_dir), every checkpoint."""
    staging = staging_dir(output_dir)
    if os.path.isdir(staging):
        if any(name.startswith("checkpoint-") for name in os.listdir(staging)):
            logger.warning("Removing %s: a checkpoint whose save did not finish", staging)
        shutil.rmtree(staging)
    for _, folder, complete in checkpoint_folders(output_dir):
        if all_of_them or not complete:
            if not all_of_them:
                logger.warning("Removing %s: a checkpoint whose save did not finish", folder)
            shutil.rmtree(folder)


def _unstaged(path: str | None, staging: str, output_dir: str) -> str | None:
    """A checkpoint path under the staging folder → the same checkpoint's path once renamed into output_dir."""
    if path and os.path.dirname(path) == staging:
        return os.path.join(output_dir, os.path.basename(path))
    return path


def publish_checkpoint(staged: str, folder: str) -> None:
    """Rename the complete checkpoint `staged` to `folder`. A folder already there (a checkpoint of the same step from
    a run resumed from an earlier one) is moved aside first and removed once the new one is in place."""
    replaced = None
    if os.path.exists(folder):
        replaced = os.path.join(os.path.dirname(staged), f"replaced-{os.path.basename(folder)}")
        shutil.rmtree(replaced, ignore_errors=True)
        os.rename(folder, replaced)
    os.rename(staged, folder)
    if replaced is not None:
        shutil.rmtree(replaced)


class StagedCheckpointCallback(TrainerCallback):
    """Checkpoints are written under `<output_dir>/.saving/` and renamed to `<output_dir>/checkpoint-<step>` once
    complete (every process's files written), so a `checkpoint-*` folder always holds a whole checkpoint: a kill, a
    crash or a full disk during a save leaves only the staging folder, which the next start removes. The
    `save_total_limit` rotation then runs on output_dir after the rename, over complete checkpoints only, and keeps
    the newest: it never deletes the only complete one.

    The Trainer writes a checkpoint into `args.output_dir`; this callback points that at the staging folder from the
    step (or epoch) end that asks for a save to the `on_save` that follows it, and back. It must come after every
    callback that may ask for a save (`train_and_save` adds it last). `trainer` is waited on before the rename when
    it is uploading the checkpoint folder itself (`hub_strategy: checkpoint` or `all_checkpoints`)."""

    def __init__(self, trainer=None):
        self.trainer = trainer
        self.output_dir: str | None = None  # the real output_dir while a save is redirected to the staging folder

    def _redirect(self, args, control) -> None:
        might_save = control.should_save or (args.save_strategy == "best" and control.should_evaluate)
        if might_save and self.output_dir is None:
            self.output_dir = args.output_dir
            args.output_dir = staging_dir(self.output_dir)

    def restore(self, args) -> None:
        """Point the Trainer back at the real output_dir (after a save, or when one was asked for but not made)."""
        if self.output_dir is not None:
            args.output_dir, self.output_dir = self.output_dir, None

    def on_step_begin(self, args, state, control, **kwargs):
        self.restore(args)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        self._redirect(args, control)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        self._redirect(args, control)
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.output_dir is None:
            return control
        staging, output_dir = args.output_dir, self.output_dir
        self.restore(args)
        state.best_model_checkpoint = _unstaged(state.best_model_checkpoint, staging, output_dir)
        PartialState().wait_for_everyone()  # every process has written its part (RNG state, ZeRO shards)
        if args.should_save:
            self._wait_for_checkpoint_push(args)
            for name in sorted(os.listdir(staging)):
                if name.startswith("checkpoint-") and os.path.isdir(os.path.join(staging, name)):
                    staged = os.path.join(staging, name)
                    self._fix_best_checkpoint_path(staged, staging, output_dir)
                    publish_checkpoint(staged, os.path.join(output_dir, name))
                    logger.info("Checkpoint %s complete", os.path.join(output_dir, name))
            if os.path.isfile(os.path.join(staging, "README.md")):  # the card TRL writes with each checkpoint
                shutil.copyfile(os.path.join(staging, "README.md"), os.path.join(output_dir, "README.md"))
            rotate_checkpoints(output_dir, args.save_total_limit, state.best_model_checkpoint, use_mtime=True)
        PartialState().wait_for_everyone()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.restore(args)
        if args.should_save and os.path.isdir(staging_dir(args.output_dir)):
            push = getattr(self.trainer, "push_in_progress", None)
            if push is not None:  # an upload of the copies `hub_strategy: every_save` leaves there
                push.wait_until_done()
            shutil.rmtree(staging_dir(args.output_dir), ignore_errors=True)
        return control

    def _wait_for_checkpoint_push(self, args) -> None:
        push = getattr(self.trainer, "push_in_progress", None)
        strategy = getattr(args.hub_strategy, "value", args.hub_strategy)
        if push is not None and args.push_to_hub and strategy in ("checkpoint", "all_checkpoints"):
            push.wait_until_done()

    @staticmethod
    def _fix_best_checkpoint_path(staged: str, staging: str, output_dir: str) -> None:
        """The trainer state saved in the checkpoint names the best checkpoint by where it was written; name it by
        where it will be."""
        path = os.path.join(staged, "trainer_state.json")
        if not os.path.isfile(path):
            return
        saved = TrainerState.load_from_json(path)
        best = _unstaged(saved.best_model_checkpoint, staging, output_dir)
        if best != saved.best_model_checkpoint:
            saved.best_model_checkpoint = best
            with atomic_path(path) as temporary:
                saved.save_to_json(temporary)
