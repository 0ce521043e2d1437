"""Training runs: the recipe arguments of the two trainers (`arguments`), the Trainer subclasses and their shared
behaviour (`trainer`), the time budget and training clock (`budget`), staged checkpoints (`checkpoints`),
preemption (`preemption`), the callbacks a recipe can name (`callbacks`), the run's record (`records`:
run_summary.json, recipe.yaml, training.png) and the Hub (`hub`: push target, model card). Imports the base
modules, `evaluation` (benchmarks scored during training) and `audio` (the unit tokenizer a dataset records)."""
