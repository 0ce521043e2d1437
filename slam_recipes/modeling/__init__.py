"""The speech LM itself: a causal LM over units built or TWIST-initialised from a text LM (`unit_lm`), the
`sdpa_varlen` attention kernel for padding-free batches (`attention`) and the conversion of slamkit checkpoints
(`slamkit`). Imports only the base modules (`errors`, `precision`, `units`)."""
