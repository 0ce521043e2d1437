"""`attn_implementation: sdpa_varlen`: padding-free attention from PyTorch alone, no flash-attn wheel needed.

Registered with transformers' public `AttentionInterface` (and `AttentionMaskInterface`, with the flash kernels' mask
function: no dense mask is built) when this module is imported, which `slam_recipes.modeling.unit_lm` does when a model asks
for it. Each packed document attends causally to itself
only, and the attention work is that of the documents, not of whole rows:

- on CUDA, with PyTorch's varlen flash kernel (`torch.nn.attention.varlen.varlen_attn`) when the installed PyTorch
  has it;
- elsewhere (CPU, or an older PyTorch), one causal `scaled_dot_product_attention` per document.

Document boundaries come from `cu_seq_lens_q` (the flat padding-free batch of TRL's collator, which computes them on
the CPU), else from `position_ids` restarting at 0 (packed rows). Without either, it is ordinary causal attention
with the padding mask, so evaluation batches and left-padded, KV-cached generation work too.
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F

NAME = "sdpa_varlen"
_BUCKET = 64  # document windows are rounded up to a multiple of this (see `_per_document`)


@functools.cache
def _varlen_kernel():
    """PyTorch's varlen flash attention and the names of its keyword arguments, or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, set(inspect.signature(varlen_attn).parameters)


def _boundaries(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of each document: a document starts wherever the position is 0."""
    spans = []
    length = position_ids.shape[-1]
    for row in position_ids.reshape(-1, length):
        starts = torch.nonzero(row == 0).flatten().tolist() or [0]
        if starts[0] != 0:
            starts.insert(0, 0)
        spans.append(list(zip(starts, starts[1:] + [length], strict=True)))
    return spans


def _segments(lengths: list[int]) -> list[tuple[int, bool]]:
    """Document lengths → (length, is_single) segments, with runs of one-token documents (padding under static
    shapes, the tail piece of a chunked utterance) merged into one segment."""
    segments: list[tuple[int, bool]] = []
    for length in lengths:
        if length == 1 and segments and segments[-1][1]:
            segments[-1] = (segments[-1][0] + 1, True)
        else:
            segments.append((length, length == 1))
    return segments


def _per_document(query, key, value, spans, scaling, gqa) -> torch.Tensor:
    """One causal sdpa per document of each row (the spans tile the row); one-token documents attend to themselves
    only, so their output is their value.

    Each document's window is rounded up to a multiple of `_BUCKET` tokens by taking the tokens that follow it (zeros
    after the last): under a causal mask its own queries never see them, and their outputs are dropped, so the
    result is exact. This bounds the number of distinct shapes, which PyTorch's bf16 CPU attention kernel
    otherwise keeps memory for, one set per sequence length (resident memory grew by 1.4 GB over 300 lengths)."""
    groups = query.shape[1] // key.shape[1]
    # room for the last document's window: `_BUCKET` zero tokens after the row (only ever seen by dropped queries)
    query, key, value = (F.pad(t, (0, 0, 0, _BUCKET)) for t in (query, key, value))
    rows = []
    for row, row_spans in enumerate(spans):
        pieces = []
        position = 0
        for size, single in _segments([end - start for start, end in row_spans]):
            if single:
                v = value[row : row + 1, :, position : position + size]
                pieces.append(v.repeat_interleave(groups, dim=1) if groups > 1 else v)
            else:
                # 4D windows (1, heads, tokens, dim): PyTorch's CPU flash kernel takes those, 3D ones go the slow path
                end = position + -(-size // _BUCKET) * _BUCKET
                q, k, v = (t[row : row + 1, :, position:end] for t in (query, key, value))
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa)
                pieces.append(out[:, :, :size])
            position += size
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows)


def _flash_varlen(kernel, query, key, value, cu_seq_lens, max_length, scaling) -> torch.Tensor | None:
    """The flat batch through PyTorch's varlen flash kernel; None when this PyTorch's kernel cannot take it."""
    varlen_attn, parameters = kernel
    options = {"scale": scaling} if "scale" in parameters else {}
    if "window_size" in parameters:
        options["window_size"] = (-1, 0)  # causal
    elif "is_causal" in parameters:
        options["is_causal"] = True
    else:
        return None
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        if "enable_gqa" in parameters:
            options["enable_gqa"] = True
        else:
            key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    dtype = query.dtype
    if dtype not in (torch.float16, torch.bfloat16):  # flash kernels take half precision: autocast's, if it is on
        if not torch.is_autocast_enabled("cuda"):
            return None
        half = torch.get_autocast_dtype("cuda")
        query, key, value = query.to(half), key.to(half), value.to(half)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    cu = cu_seq_lens.to(device=q.device, dtype=torch.int32)
    out = varlen_attn(q, k, v, cu, cu, int(max_length), int(max_length), **options)
    return out.transpose(0, 1)[None].to(dtype)


def sdpa_varlen_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function: (batch, heads, length, dim) in, (batch, length, heads, dim) out."""
    if dropout:
        raise ValueError(f"attn_implementation {NAME} has no attention dropout; set attention_dropout: 0.0")
    gqa = query.shape[1] != key.shape[1]
    packed = query.shape[2] == key.shape[2] and query.shape[2] > 1 and attention_mask is None
    if packed and cu_seq_lens_q is not None and query.shape[0] == 1:
        kernel = _varlen_kernel() if query.is_cuda else None
        if kernel is not None:
            max_length = max_length_q or int(cu_seq_lens_q.diff().max())
            out = _flash_varlen(kernel, query, key, value, cu_seq_lens_q, max_length, scaling)
            if out is not None:
                return out.transpose(1, 2).contiguous(), None
        starts = cu_seq_lens_q.tolist()
        spans = [list(zip(starts[:-1], starts[1:], strict=True))]
        return _per_document(query, key, value, spans, scaling, gqa).transpose(1, 2).contiguous(), None
    if packed and position_ids is not None:
        spans = _boundaries(position_ids)
        if any(len(row) > 1 for row in spans):
            return _per_document(query, key, value, spans, scaling, gqa).transpose(1, 2).contiguous(), None
    mask = None
    q_length, kv_length = query.shape[2], key.shape[2]
    if attention_mask is not None or q_length not in (1, kv_length):
        # causal with the queries at the end of the keys (a KV-cache prefix), AND not padding (the 2D mask). A
        # one-token decode step sees every cached key, so only the padding mask applies there, and it must: with
        # left-padded prompts the first keys of a row are padding.
        mask = torch.ones(q_length, kv_length, dtype=torch.bool, device=query.device).tril(kv_length - q_length)
        mask = mask[None, None]
        if attention_mask is not None:
            mask = mask & attention_mask[:, None, None, -kv_length:].bool()
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=mask is None and q_length > 1, scale=scaling, enable_gqa=gqa
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make `attn_implementation="sdpa_varlen"` available to every transformers model in this process."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, sdpa_varlen_attention)
    AttentionMaskInterface.register(NAME, flash_attention_mask)


register()
