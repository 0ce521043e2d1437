"""Build a tiny, randomly initialised, fully offline Whisper checkpoint.

``make_tiny_whisper(folder)`` writes a WhisperForConditionalGeneration (random
weights), a GenerationConfig, a WhisperFeatureExtractor and a WhisperTokenizer
(built from a hand-made byte-level BPE vocab.json + merges.txt) into ``folder``
so that::

    transformers.pipeline("automatic-speech-recognition", model=folder, device="cpu")

loads it and transcribes 16 kHz float32 numpy arrays (junk text, but valid).

Checked against transformers 5.23.0 / torch 2.13.0 (CPU). No network access is
needed (HF_HUB_OFFLINE=1 is set on import).

Token-id layout mirrors the real multilingual Whisper vocabulary (only
shrunk), because several code paths in transformers rely on it:

    [0, n_text)          byte-level BPE text tokens (256 bytes + a few merges)
    n_text               <|endoftext|>     (eos = bos = pad = unk)
    n_text + 1           <|startoftranscript|>   (decoder_start_token_id)
    n_text + 2 ...       <|en|>, <|zh|>, ... one per entry of whisper LANGUAGES,
                         in that order (WhisperTokenizer.prefix_tokens computes
                         the language id as sot + 1 + index)
    then                 <|translate|>, <|transcribe|>, <|startoflm|>,
                         <|startofprev|>, <|nocaptions|>, <|notimestamps|>
                         (no-speech token must be notimestamps - 1)
    then                 <|0.00|> ... <|30.00|> (1501 timestamp tokens,
                         timestamp_begin = notimestamps + 1; NOT special)
"""

from __future__ import annotations

import json
import os


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / Whisper byte -> printable unicode char mapping."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


# A handful of merges so the BPE is a real BPE (order matters: rank = line).
_MERGES = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("Ġ", "a"),
    ("i", "n"),
    ("Ġ", "s"),
    ("Ġ", "w"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "o"),
    ("r", "e"),
    ("Ġ", "b"),
    ("a", "t"),
    ("e", "n"),
    ("Ġ", "c"),
    ("o", "r"),
    ("i", "s"),
    ("Ġ", "i"),
]


def _write_bpe_files(folder: str) -> tuple[str, str]:
    """Create vocab.json / merges.txt for a minimal byte-level BPE."""
    byte_chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for ch in byte_chars:
        vocab[ch] = len(vocab)
    for a, b in _MERGES:
        merged = a + b
        if merged not in vocab:
            vocab[merged] = len(vocab)
    # <|endoftext|> lives in vocab.json right after the text tokens, as in the
    # original Whisper files; all other specials are added tokens.
    vocab["<|endoftext|>"] = len(vocab)

    vocab_file = os.path.join(folder, "vocab.json")
    merges_file = os.path.join(folder, "merges.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=1)
    with open(merges_file, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in _MERGES:
            f.write(f"{a} {b}\n")
    return vocab_file, merges_file


def _load_bpe_files(vocab_file: str, merges_file: str):
    with open(vocab_file, encoding="utf-8") as f:
        vocab = json.load(f)
    merges = []
    with open(merges_file, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#version"):
                continue
            a, b = line.split(" ")
            merges.append((a, b))
    return vocab, merges


def make_tiny_whisper(
    folder: str,
    d_model: int = 32,
    layers: int = 1,
    heads: int = 2,
    max_target_positions: int = 128,
    max_new_tokens: int = 8,
    seed: int = 0,
    init_std: float = 0.3,
) -> str:
    """Write a tiny random Whisper model + processor to ``folder``; return ``folder``.

    d_model/layers/heads: model size (default ~0.1M parameters, ~0.5 MB on disk).
    max_new_tokens: decoding length limit per 30 s window, stored as
        generation_config.max_length (see below); override per call with
        generate_kwargs={"max_new_tokens": n}.
    seed: torch seed for the random weights (global RNG state is left untouched).
    init_std: weight init std; 0.3 (>> Whisper's 0.02) makes the junk output depend
        on the audio instead of repeating one token.
    """
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    os.makedirs(folder, exist_ok=True)

    # ---------------------------------------------------------------- tokenizer
    vocab_file, merges_file = _write_bpe_files(folder)
    vocab, merges = _load_bpe_files(vocab_file, merges_file)

    lang_tokens = [f"<|{code}|>" for code in LANGUAGES]  # dict order == whisper order
    special_tokens = (
        ["<|startoftranscript|>"]
        + lang_tokens
        + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    )
    tokenizer = WhisperTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[
            AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=True) for t in special_tokens
        ],
        model_max_length=1024,
    )
    # Timestamp tokens are ordinary (non-special) added tokens, exactly like on the Hub:
    # transformers treats every id >= <|notimestamps|>+1 as a timestamp.
    tokenizer.add_tokens(
        [
            AddedToken("<|%.2f|>" % (i * 0.02), lstrip=False, rstrip=False, normalized=False, special=False)
            for i in range(1501)
        ]
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ["<|endoftext|>"] + special_tokens}
    eot = ids["<|endoftext|>"]
    sot = ids["<|startoftranscript|>"]
    notimestamps = ids["<|notimestamps|>"]
    # sanity checks on the layout transformers relies on
    assert eot == len(vocab) - 1 and sot == eot + 1
    assert ids["<|en|>"] == sot + 1 and ids[lang_tokens[-1]] == sot + len(lang_tokens)
    assert ids["<|nocaptions|>"] == notimestamps - 1
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == notimestamps + 1
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == notimestamps + 1501
    vocab_size = len(tokenizer)
    assert vocab_size == notimestamps + 1502

    feature_extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)  # 30 s, hop 160 -> 3000 frames
    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)

    # -------------------------------------------------------------------- model
    space_id = tokenizer.convert_tokens_to_ids("Ġ")
    byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
    readable_ids = [
        i
        for tok, i in vocab.items()
        if tok != "<|endoftext|>"
        and all(byte_decoder[c] == 32 or chr(byte_decoder[c]).isalpha() and byte_decoder[c] < 128 for c in tok)
    ]
    # suppress every special token except <|endoftext|> during generation (keeps the
    # junk output free of control tokens); <|startofprev|> must be suppress_tokens[-2]
    # (fallback for prev_sot_token_id in long-form decoding).
    suppress_tokens = (
        [sot]
        + [ids[t] for t in lang_tokens]
        + [
            ids["<|translate|>"],
            ids["<|transcribe|>"],
            ids["<|startoflm|>"],
            notimestamps,
            ids["<|startofprev|>"],
            ids["<|nocaptions|>"],
        ]
    )
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=1500,
        max_target_positions=max_target_positions,
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=suppress_tokens,
        begin_suppress_tokens=[space_id, eot],
        init_std=init_std,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config).eval()

    # With random weights ~80% of the vocabulary is timestamp tokens, so greedy decoding
    # emits them all the time even after <|notimestamps|>. In short-form decoding
    # generate() then re-seeks inside the 30 s window (several generate calls per input)
    # and a pair "<|0.00|><|0.00|>" would make it seek by 0 frames forever. Make the
    # (tied) output projection never prefer a timestamp unless a logits processor forces
    # one (long-form / return_timestamps=True): give the final decoder LayerNorm a large
    # bias on dim 0 and point all timestamp embeddings the opposite way, so their logits
    # are <= -3*sqrt(d_model) while text logits stay ~0.
    with torch.no_grad():
        ts_begin = notimestamps + 1
        model.model.decoder.layer_norm.bias.zero_()
        model.model.decoder.layer_norm.bias[0] = 4.0 * d_model**0.5
        emb = model.model.decoder.embed_tokens.weight  # tied with proj_out
        emb[ts_begin:] = 0.0
        emb[ts_begin:, 0] = -1.0
        # Same lever to keep the junk text readable: text tokens made only of ASCII
        # letters/space get a constant logit bonus of 2.5*init_std*h[0] (>= 7.5 std of
        # the random logits); the rest (lone UTF-8 byte pieces, <|endoftext|>) get none.
        # Which readable token wins still depends on the audio via the random weights.
        emb[:ts_begin, 0] = 0.0
        emb[readable_ids, 0] = 2.5 * init_std
    assert model.proj_out.weight.data_ptr() == emb.data_ptr()

    gen = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        # Length limit as `max_length` (like real checkpoints' 448), NOT `max_new_tokens`:
        #  * the ASR pipeline adds its default max_new_tokens=256 unless the model's
        #    generation config sets max_new_tokens or max_length;
        #  * Whisper's generate turns max_length into "new tokens after the decoder
        #    prompt" (max_length + len(prompt), capped at max_target_positions);
        #  * with max_new_tokens in generation_config.json, every call logs
        #    "Both `max_new_tokens` (=8) and `max_length`(=20) seem to have been set".
        max_length=max_new_tokens,
        num_beams=1,  # the ASR pipeline otherwise defaults to num_beams=5
        do_sample=False,
        suppress_tokens=suppress_tokens,
        begin_suppress_tokens=[space_id, eot],
    )
    # Whisper-specific fields read by WhisperGenerationMixin.generate
    gen.is_multilingual = True
    gen.lang_to_id = {t: ids[t] for t in lang_tokens}
    gen.task_to_id = {"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]}
    gen.no_timestamps_token_id = notimestamps
    gen.prev_sot_token_id = ids["<|startofprev|>"]
    gen.max_initial_timestamp_index = 50
    # only needed for return_timestamps="word" (cross-attention DTW); any (layer, head) works
    gen.alignment_heads = [[layers - 1, h] for h in range(heads)]
    # NOTE: do not set gen.return_timestamps = False: generate() then refuses > 30 s
    # audio ("requires the model to predict timestamp tokens") instead of switching
    # to long-form mode automatically.
    model.generation_config = gen

    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
