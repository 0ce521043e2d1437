"""The callbacks a recipe can name in its `callbacks:` list (`CALLBACKS`: the time budget, preemption) and the
recipe's logging to the experiment trackers. The callbacks themselves live with their concern: `budget`,
`preemption`, `checkpoints`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from transformers import TrainerCallback

from slam_recipes.errors import ConfigError
from slam_recipes.training.budget import build_time_budget_callback
from slam_recipes.training.preemption import PreemptionCallback

logger = logging.getLogger(__name__)


class RecipeLoggingCallback(TrainerCallback):
    """Log the recipe (all of it: model, data and training options) to the experiment trackers of `report_to` when
    training begins, next to the TrainingArguments and model config their own callbacks log: a `recipe` text in
    TensorBoard, a `recipe` entry of the W&B or Trackio run config. `callbacks` is the trainer's callback list, where
    the trackers' callbacks (set up earlier in `on_train_begin`) are found."""

    def __init__(self, recipe: dict, callbacks: list):
        self.recipe = recipe
        self.callbacks = callbacks

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        import yaml

        for callback in self.callbacks:
            name = type(callback).__name__
            if name == "TensorBoardCallback" and getattr(callback, "tb_writer", None) is not None:
                text = yaml.safe_dump(self.recipe, sort_keys=False, allow_unicode=True)
                callback.tb_writer.add_text("recipe", "\n".join("    " + line for line in text.splitlines()))
                callback.tb_writer.flush()
            elif name == "WandbCallback":
                import wandb

                if wandb.run is not None:
                    wandb.config.update({"recipe": self.recipe}, allow_val_change=True)
            elif name == "TrackioCallback":
                import trackio

                trackio.config.update({"recipe": self.recipe}, allow_val_change=True)
        return control


# Callbacks a recipe can name in its `callbacks:` list. Each builder takes the training arguments and returns a
# callback, or None when its options leave it off.
CALLBACKS: dict[str, Callable] = {
    "time_budget": build_time_budget_callback,
    "preemption": lambda args: PreemptionCallback(),
}


def build_callbacks(names: list[str], args) -> list[TrainerCallback]:
    unknown = [name for name in names if name not in CALLBACKS]
    if unknown:
        raise ConfigError(f"unknown callback(s) {unknown}; known: {sorted(CALLBACKS)}")
    built = [CALLBACKS[name](args) for name in names]
    return [callback for callback in built if callback is not None]
