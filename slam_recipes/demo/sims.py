"""The interleaved (SIMS) demo's base model: a byte-level BPE text tokenizer trained with `tokenizers` on the demo
corpus's training texts, and the Slam demo's tiny Qwen2 architecture sized to it (config only: random init).

`recipes/demo-sims/tiny-qwen2-bpe/` holds what `write_demo_base` writes (the tokenizer files and config.json);
`recipes/pretrain.py` with `interleaved: true` and `twist_init: false` builds the model from them and extends it with
the 500 units and the `<speech>` / `<text>` markers (`modeling.interleaved.build_interleaved_lm`). The tokenizer is a
function of the corpus's texts: a rebuild reproduces the committed files (tests/test_demo_sims.py).
"""

from __future__ import annotations

import json
import os

TEXT_VOCAB_SIZE = 1024  # a cap: the 322 words of the corpus stop the merges at 814 tokens
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2
TEXT_COLUMN = "units_text"  # the story's text in data/demo/pretrain


def train_text_tokenizer(texts, vocab_size: int = TEXT_VOCAB_SIZE):
    """A `PreTrainedTokenizerFast`: byte-level BPE (GPT-2's pre-tokenisation, no prefix space) trained on `texts`
    to `vocab_size` tokens, with `<pad>` (0), BOS `<s>` (1) and EOS `</s>` (2). Deterministic in `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    pad, bos, eos = SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad)
    # Saved as `unk_token: null`: loaded beside a qwen2 config.json, AutoTokenizer picks Qwen2's tokenizer class,
    # whose default unk token (<|endoftext|>) would otherwise be added as an 815th token.
    tokenizer.init_kwargs["unk_token"] = None
    return tokenizer


def corpus_texts(corpus_dir: str) -> list[str]:
    """The training texts of the demo corpus (titles and stories of `pretrain/train`), in order."""
    import pyarrow.parquet as pq

    return (
        pq.read_table(os.path.join(corpus_dir, "pretrain", "train.parquet"), columns=[TEXT_COLUMN])
        .column(TEXT_COLUMN)
        .to_pylist()
    )


def write_demo_base(output_dir: str, corpus_dir: str, architecture_dir: str) -> None:
    """Write the demo base into `output_dir`: the tokenizer trained on `corpus_dir`'s texts, and
    `architecture_dir`'s config.json with its vocabulary and special ids set to the tokenizer's."""
    tokenizer = train_text_tokenizer(corpus_texts(corpus_dir))
    with open(os.path.join(architecture_dir, "config.json")) as f:
        config = json.load(f)
    config.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    os.makedirs(output_dir, exist_ok=True)
    tokenizer.save_pretrained(output_dir)
    with open(os.path.join(output_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
