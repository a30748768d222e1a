"""Test doubles for the evaluation: a small BPE tokenizer and three protocol-conforming models.

* ``make_test_tokenizer()``  byte-level BPE trained (offline, < 1 s) on text from the generators,
                        standing in for the tiny tokenizer of ``olmpool.train.tokenizer``;
* ``RandomLM``          fixed random logits per previous token (chance-level baseline);
* ``UnigramLM``         the same distribution at every position (hand-computable scores);
* ``OracleLM``          reads the answer from its *input text* with task-specific parsing
                        (``solve``) and emits it greedily, then end-of-document. It treats
                        the first call on a cache as the whole prompt, so use it with an Engine
                        whose ``prefill_chunk`` exceeds the prompt length.
* ``GuessLM``           emits a uniformly random token of a given set at every step (e.g. the
                        MQAR values: chance level of the MQAR recall tasks).

Used by tests/test_eval_*.py and benchmarks/eval_speed.py; nothing here is used to score a
real model.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache

import torch

EOD = "<|endoftext|>"


class HFTokenizer:
    """Wrap a ``tokenizers.Tokenizer`` into the eval Tokenizer protocol."""

    def __init__(self, tok, eod_token: str = EOD):
        self.tok = tok
        self.eod = tok.token_to_id(eod_token)
        self.vocab_size = tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)


def _training_text() -> list[str]:
    from olmpool.eval import ruler
    from olmpool.eval.synthetic import DOMAINS, domain_documents, essay_text, fact_corpus, icl_dataset

    texts = [essay_text(1, 20000), ruler.NOISE * 20]
    fc = fact_corpus(3, 300)
    texts += fc.docs[:300]
    texts += [" ".join(ruler.needle_words()[::50])]
    texts += [" ".join(str(i * 7919 % 10**7) for i in range(2000))]
    texts += ["".join("0123456789abcdef-"[i * 31 % 17] for i in range(20000))]
    texts += [d for dom in DOMAINS for d in domain_documents(dom, 5, 3, 300)]
    texts += [x["text"] for x in icl_dataset("trec_coarse", 1).train[:100]]
    for t, p in ruler.TEMPLATES.values():
        texts.append(t + p)
    texts.append("VAR ABCDE = 12345 VAR QWERT = VAR ABCDE JSON data: Key: Corresponding value: [ID: 12] Document (Title: x): Ranking: 3 > 1 > 2 label: 4")
    return texts


@lru_cache(maxsize=4)
def make_test_tokenizer(vocab_size: int = 2048) -> HFTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_training_text(), trainer=trainer)
    return HFTokenizer(tok)


class _Cache:
    def __init__(self, batch: int):
        self.length = 0
        self.history: list[list[int]] = [[] for _ in range(batch)]
        self.prompt_len: int | None = None


class _StatelessLM:
    """A test model whose logits need no past: the cache only counts tokens; subclasses give
    ``logits(input_ids [B, T]) -> [B, T, V]``."""

    vocab_size: int

    def new_cache(self, batch: int) -> _Cache:
        return _Cache(batch)

    def __call__(self, input_ids: torch.Tensor, *, cache=None) -> torch.Tensor:
        if cache is not None:
            cache.length += input_ids.shape[1]
        return self.logits(input_ids)


class RandomLM(_StatelessLM):
    """logits[t] = table[token_t]: a fixed random bigram model (seeded)."""

    def __init__(self, vocab_size: int, seed: int = 0, scale: float = 3.0):
        self.vocab_size = vocab_size
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab_size, vocab_size, generator=g) * scale  # [V,V]

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.table[input_ids]  # [B,T,V]


class UnigramLM(_StatelessLM):
    """The same next-token distribution ``probs`` at every position."""

    def __init__(self, probs: torch.Tensor):
        self.vocab_size = probs.shape[0]
        self.logp = torch.log(probs)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        return self.logp.expand(B, T, self.vocab_size).clone()


class OracleLM:
    """Emits ``solve(prompt_text)`` token by token, then end-of-document."""

    def __init__(self, tokenizer: HFTokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.calls = 0

    def new_cache(self, batch: int) -> _Cache:
        return _Cache(batch)

    def __call__(self, input_ids: torch.Tensor, *, cache=None) -> torch.Tensor:
        self.calls += 1
        B, T = input_ids.shape
        if cache is None:
            cache = _Cache(B)
        first = cache.prompt_len is None
        for b in range(B):
            cache.history[b].extend(int(x) for x in input_ids[b])
        if first:
            cache.prompt_len = len(cache.history[0])
            cache.targets = [self.tokenizer.encode(solve(self.tokenizer.decode(h))) + [self.tokenizer.eod] for h in cache.history]
        cache.length += T
        logits = torch.zeros(B, T, self.vocab_size)
        for b in range(B):
            done = len(cache.history[b]) - cache.prompt_len
            tgt = cache.targets[b]
            nxt = tgt[done] if done < len(tgt) else self.tokenizer.eod
            logits[b, -1, nxt] = 100.0
        return logits


class GuessLM(_StatelessLM):
    """Puts all probability on one token of ``choices``, drawn uniformly at every call."""

    def __init__(self, vocab_size: int, choices: list[int], seed: int = 0):
        self.vocab_size = vocab_size
        self.choices = torch.tensor(choices)
        self.gen = torch.Generator().manual_seed(seed)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.vocab_size)
        pick = self.choices[torch.randint(len(self.choices), (B,), generator=self.gen)]
        logits[torch.arange(B), -1, pick] = 100.0
        return logits


# ------------------------------------------------------------------------------ solvers

_MQAR_TEXT = re.compile(r"\s*(?:[fkv]\d+\s+)*k\d+\s*")


def _solve_mqar(prompt: str) -> str:
    """MQAR recall: the value that follows the first occurrence of the final (queried) key."""
    words = prompt.split()
    key = words[-1]
    for w, nxt in zip(words[:-1], words[1:-1]):
        if w == key and nxt.startswith("v"):
            return " " + nxt
    return " unknown"


def _after_last(text: str, marker: str) -> str:
    i = text.rfind(marker)
    return text[i + len(marker):] if i >= 0 else text


def _solve_qa(text: str, question: str) -> str:
    m = re.search(r"What is the (.+) of (.+?)\?", question)
    if m:
        attr, name = m.groups()
        v = re.search(rf"The {re.escape(attr)} of {re.escape(name)} is (.+?)\.", text)
        return v.group(1) if v else ""
    m = re.search(r"In which country was (.+?) born\?", question)
    if m:
        city = re.search(rf"{re.escape(m.group(1))} was born in (.+?)\.", text)
        if not city:
            return ""
        c = re.search(rf"{re.escape(city.group(1))} is a small town in the country of (.+?)\.", text)
        return c.group(1) if c else ""
    return ""


def solve(prompt: str) -> str:
    """The answer a perfect reader would give, computed from the prompt text alone."""
    if _MQAR_TEXT.fullmatch(prompt):
        return _solve_mqar(prompt)
    if "Extract the value corresponding to the specified key in the JSON object below." in prompt:
        blob = prompt[prompt.index("JSON data:\n") + len("JSON data:\n"):prompt.index("\n\nExtract the value")]
        data = json.loads(blob)
        key = json.loads(re.findall(r'Key: ("[^"]+")', prompt)[-1])
        return " " + data[key]
    if "You are provided with a list of documents, each indicated by their ID." in prompt:
        head, question = prompt.rsplit("\n\nQuery: ", 1)
        block = _after_last(head, "Ranking: ")
        m = re.match(r"what is the (.+) of (.+)$", question.split("\n")[0].strip())
        attr, name = m.groups() if m else ("", "")
        scored = []
        for pid, body in re.findall(r"\[ID: (\d+)\] Document(?: \(Title: [^)]*\))?: (.*)", block):
            fact = re.match(r"The (.+) of (.+?) is (.+)\.$", body.strip())
            a, n = (fact.group(1), fact.group(2)) if fact else ("", "")
            scored.append((2 * (n == name) + (a == attr), pid))
        scored.sort(key=lambda x: -x[0])
        return " " + " > ".join(pid for _, pid in scored)
    if "Use the provided mapping from the text to label" in prompt:
        body = prompt[:prompt.rfind("\nlabel:")]
        blocks = body.split("\n\n")
        question = blocks[-1]
        def keywords(text: str) -> set[str]:  # the two class nouns of a synthetic ICL text
            m = re.search(r"the (\S+) and \S+ my (\S+)", text)
            return set(m.groups()) if m else set(text.split())

        qwords = keywords(question)
        per_label: Counter = Counter()
        for blk in blocks[1:-1]:
            if "\nlabel: " in blk:
                text, lab = blk.rsplit("\nlabel: ", 1)
                per_label[lab.strip()] += len(qwords & keywords(text))
        return " " + per_label.most_common(1)[0][0]
    if "Use the given documents to write a concise and short answer" in prompt or "Answer the question based on the given documents." in prompt:
        question = _after_last(prompt, "Question: ").split("\n")[0]
        return " " + _solve_qa(prompt, question)
    if "special magic" in prompt:
        query = re.findall(r"for (.+?) mentioned in the provided text\?", prompt)[-1]
        parts = query.split(", and ")
        keys = (parts[0].split(", ") if len(parts) > 1 else []) + [parts[-1]]
        values = []
        for k in keys:
            values += re.findall(rf"One of the special magic \w+ for {re.escape(k)} is: (\S+?)\.", prompt)
        return " " + ", ".join(values)
    if "Memorize and track the chain(s) of variable assignment" in prompt:
        main = _after_last(prompt, "Memorize and track the chain(s)")
        value = re.findall(r"assigned the value (\d+)", main)[-1]
        found = re.findall(rf"VAR (\w+) = {value}\b", main)
        out = list(found)
        frontier = list(found)
        while frontier:
            x = frontier.pop()
            for y in re.findall(rf"VAR (\w+) = VAR {x}\b", main):
                if y not in out:
                    out.append(y)
                    frontier.append(y)
        return " " + " ".join(out)
    if "Below is a numbered list of words." in prompt:
        lst = _after_last(prompt, "Memorize the ones that appear most often.\n").split("\nQuestion:")[0]
        counts = Counter(re.findall(r"\d+\. (\S+)", lst))
        top = [w for w, _ in counts.most_common(10)]
        return " " + " ".join(f"{i + 1}. {w}" for i, w in enumerate(top))
    if "Read the following coded text" in prompt:
        body = _after_last(prompt, "Find the three most frequently appeared coded words. ").split("\nQuestion:")[0]
        counts = Counter(w for w in body.split() if w != "...")
        return " " + " ".join(w for w, _ in counts.most_common(3))
    return " unknown"
