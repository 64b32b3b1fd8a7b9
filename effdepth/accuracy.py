"""What a model gets right on a prompt set: teacher-forced greedy exact match, per set and level.

An example counts as correct when every scored answer token is the argmax of the model's prediction
from the position before it, reading prompt + answer as one string (the zoo's evaluation, methods page §6,
with the methods page's tokenisation (§4): the answer's tokens are found from character offsets). The scored
tokens are those of the whole answer, or of the character spans `meta['scored']` (relative to the
answer) where an example names them (word problems: each step's result).

`accuracy_table` puts each level's accuracy beside its chance rate (`effdepth.data.natural.chance`)
and labels a level "at chance" when a one-sided binomial test cannot tell the accuracy from the
chance rate (p ≥ 0.05).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from scipy.stats import binomtest

from effdepth.data.examples import Example
from effdepth.data.natural import chance
from effdepth.engine import decode


def tokens_in_spans(offsets, spans) -> list[int]:
    """Indices of the tokens (by their character offsets) that overlap any of the character spans."""
    return [i for i, (s, e) in enumerate(offsets) if e > s and any(s < b and e > a for a, b in spans)]


def scored_tokens(model, ex: Example) -> tuple[torch.Tensor, list[int]]:
    """Token ids of prompt + answer (one string, the tokenizer's specials) and the indices of the
    tokens to score: those overlapping the answer (or its `meta['scored']` spans)."""
    text = ex.prompt + ex.answer
    enc = model.tokenizer(text, return_offsets_mapping=True)
    spans = [(len(ex.prompt) + a, len(ex.prompt) + b) for a, b in ex.meta.get("scored", [(0, len(ex.answer))])]
    idx = tokens_in_spans(enc["offset_mapping"], spans)
    if not idx or idx[0] == 0:
        raise ValueError(f"No scorable answer tokens in {text!r} (answer {ex.answer!r}).")
    return torch.tensor(enc["input_ids"]), idx


@torch.no_grad()
def exact_match(model, examples: Sequence[Example], batch_size: int = 8) -> list[bool]:
    """Per example: is every scored token the argmax of the prediction before it (teacher forced)?

    Right-padded batches; only the final residual of the positions that predict a scored token is
    decoded, so no [batch, T, V] logits exist."""
    a = model.adapter
    norm = None if model.remote else a.module(model.hf, a.final_norm)
    out: list[bool] = []
    for i in range(0, len(examples), batch_size):
        items = [scored_tokens(model, ex) for ex in examples[i : i + batch_size]]
        T = max(len(ids) for ids, _ in items)
        batch = torch.full((len(items), T), model.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(batch)
        for j, (ids, _) in enumerate(items):
            batch[j, : len(ids)], mask[j, : len(ids)] = ids, 1
        if model.remote:  # NDIF: one trace per batch, the greedy predictions come back (no weights here)
            nn = model.nn
            with model.trace({"input_ids": batch, "attention_mask": mask}):
                pred_all = nn.output.logits.argmax(-1).cpu().save()
            for j, (ids, idx) in enumerate(items):
                pos = torch.tensor(idx)
                out.append(bool((pred_all[j, pos - 1] == ids[pos]).all()))
            continue
        got = {}
        handle = norm.register_forward_pre_hook(lambda m, args: got.update(h=args[0].detach()))  # noqa: B023  (removed before the next loop step)
        try:
            try:
                model.hf(
                    input_ids=batch.to(model.device),
                    attention_mask=mask.to(model.device),
                    use_cache=False,
                    logits_to_keep=1,
                )
            except TypeError:
                model.hf(input_ids=batch.to(model.device), attention_mask=mask.to(model.device), use_cache=False)
        finally:
            handle.remove()
        for j, (ids, idx) in enumerate(items):
            pos = torch.tensor(idx)
            pred = decode(model, got["h"][j, pos - 1]).argmax(-1).cpu()
            out.append(bool((pred == ids[pos]).all()))
    return out


def at_chance(correct: int, n: int, rate: float, alpha: float = 0.05) -> tuple[bool, float]:
    """(at chance?, p) from a one-sided exact binomial test of `correct`/`n` against `rate`."""

    p = float(binomtest(correct, n, min(max(rate, 0.0), 1.0), alternative="greater").pvalue)
    return p >= alpha, p


def accuracy_table(model, sets: dict[str, Sequence[Example]], batch_size: int = 8) -> pd.DataFrame:
    """One row per (set, level): n, accuracy, chance, p (binomial, accuracy > chance), and
    `label` 'at chance' or 'above chance'. `sets` maps a set name to its examples (any levels)."""

    rows = []
    for name, examples in sets.items():
        examples = list(examples)
        ok = exact_match(model, examples, batch_size=batch_size)
        for lv in sorted({ex.level for ex in examples}, key=lambda v: (v is None, v)):
            group = [k for ex, k in zip(examples, ok) if ex.level == lv]
            exs = [ex for ex in examples if ex.level == lv]
            rate = chance(exs)
            flat, p = at_chance(sum(group), len(group), rate)
            rows.append(
                {
                    "set": name,
                    "level": lv,
                    "n": len(group),
                    "accuracy": sum(group) / len(group),
                    "chance": rate,
                    "p": p,
                    "label": "at chance" if flat else "above chance",
                }
            )
    return pd.DataFrame(rows)
