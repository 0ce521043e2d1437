"""Measuring a speech LM: the pairwise likelihood benchmarks (`likelihood`: sWUGGY, sBLIMP, Spoken/Topic
StoryCloze, SALMon), converters from the benchmarks' published layouts to pair datasets (`layouts`), prompts and
continuations (`prompts`, `generation`), GenPPL and auto-BLEU of continuations (`generative`), the metric functions
(`metrics`) and the same metrics as Hugging Face `evaluate` modules (`evaluate_metrics`). Imports the base modules,
`audio`, `data` and `modeling`; never `training`."""
