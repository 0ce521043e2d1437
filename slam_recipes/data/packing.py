"""Packing and collation: token-id rows packed into training rows (padding-free, block or none), and the batch
collators that keep packed documents apart in attention."""

from __future__ import annotations

from trl import pack_dataset

from slam_recipes.configs import PACKING_MODES
from slam_recipes.errors import DataError
from slam_recipes.units import NUM_SPECIAL, PAD_ID

_PACK_BATCH_ROWS = 20_000  # rows binned together by BFD packing: larger fills blocks better


def pack(dataset, context_length: int, packing: str = "padding_free", num_proc: int | None = None):
    """Pack token-id rows into rows of at most `context_length`.

    - `padding_free`: whole documents side by side (best-fit decreasing), with `seq_lengths` so the collator restarts
      positions per document and the attention kernel never looks across documents;
    - `block`: concatenate and cut into `context_length` blocks (the classic fallback; attention crosses documents);
    - `none`: one document per row (padded batches, the plain HF default).
    Documents are already at most `context_length` long, so no token is dropped or duplicated.
    """
    if packing not in PACKING_MODES:
        raise DataError(f"packing must be one of {PACKING_MODES}, got {packing!r}")
    if packing == "none":
        return dataset
    strategy = "bfd_split" if packing == "padding_free" else "wrapped"
    return pack_dataset(
        dataset, context_length, strategy=strategy, map_kwargs={"batch_size": _PACK_BATCH_ROWS, "num_proc": num_proc}
    )


def flattens_batches(attn_implementation: str | None) -> bool:
    """Varlen kernels (flash_attention_*, sdpa_varlen) take a padding-free batch as one flat row with `cu_seq_lens`;
    sdpa/eager/flex take packed rows as they are, with restarting positions (transformers derives the block-diagonal
    mask from them)."""
    return attn_implementation is not None and ("flash" in attn_implementation or "varlen" in attn_implementation)


class PackedRowsCollator:
    """Padding-free packed rows for sdpa/eager: rows stay separate (so the mask is rows × L × L, not (rows·L)²),
    positions restart at every document, there is no attention mask (transformers then derives a block-diagonal
    causal mask from the positions), and the label of each document's first token is masked."""

    def __init__(self, pad_token_id: int = PAD_ID, pad_to_multiple_of: int | None = None):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.base = DataCollatorForLanguageModeling(
            pad_token_id=pad_token_id, return_position_ids=True, pad_to_multiple_of=pad_to_multiple_of
        )

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.base(examples)
        del batch["attention_mask"]
        batch["labels"][batch["position_ids"] == 0] = -100
        # transformers derives the packed mask only when no KV cache is passed (masking_utils
        # `_preprocess_mask_arguments`); with the default use_cache=True, attention would cross documents.
        batch["use_cache"] = False
        return batch


def padding_free_is_exact(model, attn_implementation: str | None = None, length: int = 8) -> bool:
    """Whether `model` keeps padding-free documents apart as it will train: its own attention kernel on the batch
    that `build_collator("padding_free", attn_implementation)` makes (one flat row with `cu_seq_lens` for varlen
    kernels, else packed rows with restarting positions).

    Two documents A, B of equal length, packed as [A, B] and [B, A], must give each document the same logits in
    either place (same shapes, so no tolerance games). They differ when attention crosses documents (OPT's sdpa and
    eager masks in transformers 5: it builds them without `position_ids`, so they ignore the restarts) or when
    positions do not restart."""
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.get_text_config().vocab_size
    a, b = torch.randint(NUM_SPECIAL, vocab, (2, length), generator=generator).tolist()
    examples = [{"input_ids": a + b, "seq_lengths": [length] * 2}, {"input_ids": b + a, "seq_lengths": [length] * 2}]
    batch = build_collator("padding_free", attn_implementation)(examples)
    del batch["labels"]
    batch["use_cache"] = False  # transformers derives a packed mask only without a KV cache
    device = next(model.parameters()).device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**batch).logits
    finally:
        model.train(was_training)
    a_first, b_second, b_first, a_second = logits.float().reshape(4, length, -1)  # either layout: A B | B A
    return all(
        torch.allclose(there, here, rtol=1e-3, atol=1e-3 * float(here.abs().max()))
        for there, here in ((b_second, b_first), (a_second, a_first))
    )


def check_packing(model, packing: str, attn_implementation: str | None) -> None:
    """Refuse padding-free packing where the model, with its attention kernel and the collator `attn_implementation`
    selects, would let documents see each other or not restart their positions; the error says which. Flash kernels
    run only on CUDA: a model still on the CPU with one is not probed (they read the boundaries from `cu_seq_lens`)."""
    import torch

    kernel = model.config._attn_implementation
    device = next(model.parameters()).device
    if packing != "padding_free" or ("flash" in (kernel or "") and device.type != "cuda"):
        return
    if padding_free_is_exact(model, attn_implementation):
        return
    # Which failure: a model that reads `position_ids` gives other logits for restarting than for running positions.
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(NUM_SPECIAL, model.config.get_text_config().vocab_size, (1, 16), generator=generator)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            restarting, running = [
                model(input_ids=ids.to(device), position_ids=positions[None].to(device), use_cache=False).logits
                for positions in (torch.arange(8).repeat(2), torch.arange(16))
            ]
    finally:
        model.train(was_training)
    if torch.equal(restarting, running):
        reason = "positions do not restart per document (the model ignores position_ids); use packing: block"
    elif flattens_batches(kernel):  # the kernel that should read the boundaries
        reason = f"attention crosses documents ({kernel} ignores the document boundaries); use packing: block"
    else:
        reason = (
            f"attention crosses documents (its {kernel} mask ignores the document boundaries); use "
            "attn_implementation: sdpa_varlen or a flash kernel, which read the boundaries themselves, or packing: block"
        )
    layout = "one flat row" if flattens_batches(attn_implementation) else "packed rows"
    raise DataError(
        f"packing: padding_free is not exact for {type(model).__name__} with attn_implementation={kernel} "
        f"({layout}): {reason}"
    )


class StaticFlatCollator:
    """The flat padding-free batch (TRL's collator, `padding_free=True`) padded to `rows × row_length` tokens, so
    every batch of the same number of rows has the same shape (for torch.compile); the padding is one-token
    documents with label -100."""

    def __init__(self, row_length: int, pad_token_id: int = PAD_ID):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.row_length = row_length
        self.base = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True)

    def __call__(self, examples: list[dict]) -> dict:
        self.base.pad_to_multiple_of = len(examples) * self.row_length
        return self.base(examples)


def build_collator(packing: str, attn_implementation: str | None = None, pad_to_multiple_of: int | None = None):
    """The batch collator for a packing mode (built on TRL's LM collator).

    - `padding_free` with a flash kernel: one flat row per batch, positions restarting per document, `cu_seq_lens`;
    - `padding_free` otherwise: `PackedRowsCollator`;
    - `block` / `none`: padded with PAD=0 and an attention mask, labels -100 on padding.

    `pad_to_multiple_of` pads each row's length up to a multiple of it; a flat batch of n rows is padded to a multiple
    of n × it (with the context length: static shapes either way).
    """
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    if packing == "padding_free":
        if flattens_batches(attn_implementation):
            if pad_to_multiple_of:
                return StaticFlatCollator(pad_to_multiple_of)
            return DataCollatorForLanguageModeling(pad_token_id=PAD_ID, padding_free=True)
        return PackedRowsCollator(pad_to_multiple_of=pad_to_multiple_of)
    return DataCollatorForLanguageModeling(pad_token_id=PAD_ID, pad_to_multiple_of=pad_to_multiple_of)
