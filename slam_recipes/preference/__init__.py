"""Preference data for DPO (`pairs`): spoken prompt / chosen / rejected pairs as TRL's DPO columns, with the paper's
auto-BLEU repetition filter. Imports the base modules, `data` (loading) and `evaluation.metrics` (auto-BLEU)."""
