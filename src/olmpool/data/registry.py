"""Every prepared input, and the one place that derives the evaluators' file paths.

``INPUTS`` lists the inputs (one record each, defined beside its converter in
``olmpool.data.<benchmark>``). ``eval_paths(eval_root)`` maps each config field the
evaluators and the training stages read to its file under ``data.eval_root`` (the prepared
root: evaluation inputs and the tokenized training data); ``apply_eval_root(doc)`` fills those
fields into a parsed study config, so config/paper.yaml names the root once.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from olmpool import OlmPoolError
from olmpool.data import attention, bpb, helmet, longppl, perplexity, ruler, training
from olmpool.data.core import Input, Settings

INPUTS: list[Input] = [*ruler.INPUTS, *helmet.INPUTS, *longppl.INPUTS, *perplexity.INPUTS, *bpb.INPUTS, *attention.INPUTS,
                     *training.INPUTS]
BY_NAME = {i.name: i for i in INPUTS}
MANIFEST = "manifest.json"


def eval_paths(eval_root: str | Path) -> dict[tuple[str, ...], Any]:
    """Config field (as a key path) -> value, for every file the evaluators and the training
    stages read (the blends: one prepared token stream each, olmpool.data.training)."""
    root = Path(eval_root)
    return {
        ("eval", "ruler", "essay"): str(root / ruler.ESSAY_FILE),
        ("eval", "ruler", "squad"): str(root / ruler.SQUAD_FILE),
        ("eval", "ruler", "hotpotqa"): str(root / ruler.HOTPOTQA_FILE),
        ("eval", "helmet", "data"): str(root / "helmet"),
        ("eval", "longppl", "documents"): str(root / longppl.FILE),
        ("eval", "perplexity", "splits"): {s: str(root / perplexity.split_file(s)) for s in perplexity.SPLITS},
        ("eval", "bpb", "benchmarks"): {b: str(root / bpb.bpb_file(b)) for b in bpb.BENCHMARKS},
        ("attention", "documents"): str(root / attention.FILE),
        ("data", "pretrain_blend"): [{"path": str(root / training.prefix("pretrain")), "weight": 1.0}],
        ("data", "extend_blend"): [{"path": str(root / training.prefix("extend")), "weight": 1.0}],
    }


def eval_root_of(doc: dict) -> str | None:
    return ((doc.get("data") or {}).get("eval_root")) or None


def apply_eval_root(doc: dict, where: str = "config") -> dict:
    """A copy of a parsed study config with the evaluators' files derived from data.eval_root.

    A field the config sets itself is an error when eval_root is set (two sources of truth).
    Without eval_root the config is returned unchanged (tiny scale: generated stand-ins).
    """
    root = eval_root_of(doc)
    if root is None:
        return doc
    out = copy.deepcopy(doc)
    for keys, value in eval_paths(root).items():
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise OlmPoolError(f"{where}: {'.'.join(keys[:-1])} is not a mapping")
        if keys[-1] in node and node[keys[-1]] is not None:
            raise OlmPoolError(f"{where}: {'.'.join(keys)} is set, but data.eval_root derives it ({root}). "
                               "Fix: remove the key (the files under data.eval_root are made by `olmpool data prepare`)")
        node[keys[-1]] = value
    return out


def settings_from(doc: dict, config_path: str) -> Settings:
    """The preparation settings of a parsed study config (eval_root applied)."""
    from olmpool.eval.attention.config import AttentionConfig
    from olmpool.eval.config import from_dict
    from olmpool.train.config import ExtendConfig, PretrainConfig

    doc = apply_eval_root(doc, config_path)
    ev = from_dict(doc.get("eval") or {}, scale=doc.get("scale"))
    att = AttentionConfig.from_dict(doc.get("attention") or {})
    att.validate()
    pre, ext = doc.get("pretrain") or {}, doc.get("extend") or {}
    budgets = [int(v) for v in (ext.get("budgets") or {}).values()]
    return Settings(
        config_path=config_path, tokenizer_dir=(doc.get("data") or {}).get("tokenizer_dir"), seed=ev.seed,
        helmet_contexts=list(ev.helmet.contexts), helmet_counts=dict(ev.helmet.counts),
        longppl_select_tokenizer=ev.longppl.select_tokenizer, longppl_evaluator=str(ev.longppl.evaluator),
        longppl_min_tokens=ev.longppl.min_tokens, longppl_samples=ev.longppl.samples, longppl_context=ev.longppl.context,
        attention_documents=att.n_documents, attention_min_tokens=att.min_doc_tokens or att.max_position,
        attention_seed=att.seed,
        pretrain_tokens=int(pre["tokens"]) if pre.get("tokens") is not None else None,
        extend_tokens=max(budgets) if budgets else None,
        pretrain_seed=int(pre.get("seed", PretrainConfig.seed)), extend_seed=int(ext.get("seed", ExtendConfig.seed)))


def load_doc(config_path: str | Path) -> dict:
    """The parsed study config (olmpool.config.read_config_file)."""
    from olmpool.config import read_config_file

    return read_config_file(config_path)


def select(names: list[str] | None) -> list[Input]:
    """The inputs named (all when ``names`` is empty); an unknown name is an error."""
    if not names:
        return list(INPUTS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise OlmPoolError(f"unknown input(s) {unknown}. Fix: use names from `olmpool data prepare --list`: {sorted(BY_NAME)}")
    return [BY_NAME[n] for n in names]
