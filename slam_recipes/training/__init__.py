"""Training runs: the recipe arguments of the two trainers (`arguments`), the Trainer subclasses and their shared
behaviour (`trainer`), the callbacks (`callbacks`: time budget and its schedule, staged checkpoints, preemption,
logging), the run's record (`records`: run_summary.json, recipe.yaml, training.png) and the Hub (`hub`: push target,
model card). Imports the base modules and `evaluation` (benchmarks scored during training), `audio` (the unit
tokenizer a dataset records)."""
