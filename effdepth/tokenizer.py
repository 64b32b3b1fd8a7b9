"""The one tokenizer of the models trained here: characters, shared by every zoo model and the
§3.5 grid (:mod:`effdepth.zoo`, :mod:`effdepth.objective`, trained by :mod:`effdepth.training`).

One token per character of printable ASCII (space … ``~``) and newline, after four specials:
``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3. Encoding adds ``<bos>`` at the front
(``add_special_tokens=True``, the default), never ``<eos>``. Because every character is its own
token, ``tokens(prompt + answer) == tokens(prompt) + tokens(answer)``: an answer such as ``" 12"``
is the three tokens ``' '``, ``'1'``, ``'2'``.

The vocabulary is built from constants only, so every model saved with :func:`zoo_tokenizer` has
byte-identical tokenizer files (the linear-map chapter needs source and target to share it).
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
CHARS = "".join(chr(c) for c in range(32, 127)) + "\n"
assert len(set(CHARS)) == len(CHARS) and set(string.printable) - set(CHARS) <= set("\t\r\x0b\x0c")
VOCAB_SIZE = len(SPECIALS) + len(CHARS)  # 100


def zoo_tokenizer():
    """A fresh `transformers.PreTrainedTokenizerFast` (character level, adds ``<bos>``)."""
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + tuple(CHARS))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", BOS_ID)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        model_max_length=512,
        padding_side="right",
    )
    return tok


def encode(text: str) -> list[int]:
    """Token ids of ``text`` without specials (fast path; equals the tokenizer's ids for ASCII)."""
    return [_CHAR_ID.get(c, UNK_ID) for c in text]


_CHAR_ID = {c: i + len(SPECIALS) for i, c in enumerate(CHARS)}
