"""Tokenizers loaded from a local directory (no network), for both scales.

A tokenizer directory holds a Hugging Face ``tokenizer.json`` (the OLMo cl100k-derived
tokenizer at paper scale; a byte-level BPE trained offline on the tiny corpus at tiny
scale) and, optionally, ``olmpool_tokenizer.json`` naming the end-of-document and padding
tokens (defaults: ``<|endoftext|>`` and ``<|pad|>``).

The object returned by :func:`load_tokenizer` also satisfies what Megatron-Core's
``GPTDataset`` needs from a tokenizer (``eod``, ``pad``, ``vocab_size``,
``unique_identifiers``). Its ``pad`` is a dedicated token: Megatron masks every label equal
to ``pad`` out of the loss, so ``pad`` must never be an ordinary text token.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

from olmpool import OlmPoolError

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
META_FILE = "olmpool_tokenizer.json"


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the special ids training needs."""

    def __init__(self, hf_tokenizer, directory: Path, eod_token: str = EOD_TOKEN,
                 pad_token: str = PAD_TOKEN):
        self._tok = hf_tokenizer
        self.directory = Path(directory)
        eod = hf_tokenizer.token_to_id(eod_token)
        pad = hf_tokenizer.token_to_id(pad_token)
        if eod is None:
            raise OlmPoolError(
                f"tokenizer {self.directory}: end-of-document token {eod_token!r} is not in the "
                f"vocabulary; name the right one as 'eod_token' in {self.directory / META_FILE}")
        if pad is None:
            raise OlmPoolError(
                f"tokenizer {self.directory}: padding token {pad_token!r} is not in the "
                f"vocabulary; name a dedicated special token as 'pad_token' in "
                f"{self.directory / META_FILE}")
        self.eod: int = eod
        """Id appended after every document."""
        self.pad: int = pad
        """Id Megatron masks out of the loss (dedicated special token)."""
        self.vocab_size: int = hf_tokenizer.get_vocab_size(with_added_tokens=True)
        """Number of ids the tokenizer can produce (must equal the model's vocab_size)."""
        self.unique_identifiers = OrderedDict(
            class_name=type(self).__name__, path=str(self.directory.resolve()),
            vocab_size=self.vocab_size, eod=eod, pad=pad)

    def vocab(self) -> dict[str, int]:
        """Token string -> id, special tokens included."""
        return self._tok.get_vocab(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of several texts (parallel in the Rust backend)."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (special tokens kept out)."""
        return self._tok.decode(list(ids), skip_special_tokens=True)

    # Megatron's MegatronTokenizer-style accessors used by some of its code paths.
    def tokenize(self, text: str) -> list[int]:
        return self.encode(text)

    def detokenize(self, ids: list[int]) -> str:
        return self.decode(ids)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load the tokenizer in ``directory`` (a ``tokenizer.json`` and optional meta file)."""
    from tokenizers import Tokenizer as HFTokenizer

    directory = Path(directory)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise OlmPoolError(
            f"tokenizer directory {directory} has no tokenizer.json; point data.tokenizer_dir "
            f"at a local copy of the tokenizer (or run `olmpool data tiny-corpus`)")
    meta = {}
    if (directory / META_FILE).is_file():
        meta = json.loads((directory / META_FILE).read_text())
    return Tokenizer(HFTokenizer.from_file(str(path)), directory,
                     meta.get("eod_token", EOD_TOKEN), meta.get("pad_token", PAD_TOKEN))


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> Tokenizer:
    """Train a byte-level BPE of exactly ``vocab_size`` ids offline; save it to ``out_dir``.

    Byte-level pre-tokenisation makes every string encodable (decode(encode(s)) == s). The
    two special tokens take ids 0 and 1.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOD_TOKEN, PAD_TOKEN], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    got = tok.get_vocab_size(with_added_tokens=True)
    if got != vocab_size:
        raise OlmPoolError(
            f"BPE training produced {got} ids, not vocab_size={vocab_size}: the training text is "
            f"too small for that vocabulary; generate more tiny-corpus text or lower vocab_size")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / META_FILE).write_text(json.dumps({"eod_token": EOD_TOKEN, "pad_token": PAD_TOKEN}))
    return load_tokenizer(out_dir)


def word_level(words: list[str], out_dir: str | Path) -> Tokenizer:
    """A word-level tokenizer of exactly ``words`` (one id each, after the two special tokens
    at ids 0 and 1), split on whitespace, decoded with single spaces; saved to ``out_dir``.
    For a language whose words are its tokens (the toy scale's retrieval language,
    `olmpool.train.mqar`); a word outside the list encodes as the padding id, which the
    loss masks out, so writers of such text check for it (`olmpool.train.tiny_corpus`)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    if len(set(words)) != len(words) or any(not w or any(c.isspace() for c in w) for w in words):
        raise OlmPoolError("word-level tokenizer: the words must be distinct and non-empty, without spaces")
    vocab = {EOD_TOKEN: 0, PAD_TOKEN: 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=PAD_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / META_FILE).write_text(json.dumps({"eod_token": EOD_TOKEN, "pad_token": PAD_TOKEN, "kind": "word_level"}))
    return load_tokenizer(out_dir)
