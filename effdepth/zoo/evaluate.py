"""What a zoo model learned: held-out loss against a unigram baseline, and exact-match accuracy.

Exact match is teacher-forced greedy: the model reads ``<bos> prompt answer``; the example counts
as correct when, at every answer token, that token is the argmax of the model's prediction from
the position before it (methods page §6).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch

from effdepth.data.examples import Example
from effdepth.tokenizer import BOS_ID, PAD_ID, VOCAB_SIZE, encode
from effdepth.training import masked_lm_loss


@torch.no_grad()
def exact_match(
    model: torch.nn.Module,
    examples: Sequence[Example],
    batch_size: int = 64,
    encode_fn=encode,
    bos_id: int | None = BOS_ID,
) -> list[bool]:
    """Per example: is every answer token the model's argmax under teacher forcing?"""
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # (a parameterless model: CPU)
    out: list[bool] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        seqs, spans = [], []
        for ex in chunk:
            p, a = encode_fn(ex.prompt), encode_fn(ex.answer)
            ids = ([bos_id] if bos_id is not None else []) + p + a
            seqs.append(ids)
            spans.append((len(ids) - len(a), len(ids)))
        T = max(map(len, seqs))
        ids = torch.full((len(seqs), T), PAD_ID, dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
        pred = model(input_ids=ids.to(device)).logits.argmax(-1).cpu()
        for j, (a0, a1) in enumerate(spans):
            out.append(bool((pred[j, a0 - 1 : a1 - 1] == ids[j, a0:a1]).all()))
    return out


def accuracy_by_level(model, examples: Sequence[Example], **kw) -> dict[str, float]:
    """Exact-match accuracy per ``Example.level`` (keys are strings, for JSON) and 'all'."""
    ok = exact_match(model, examples, **kw)
    by = defaultdict(list)
    for ex, k in zip(examples, ok):
        by[str(ex.level)].append(k)
    res = {lv: sum(v) / len(v) for lv, v in sorted(by.items())}
    res["all"] = sum(ok) / max(1, len(ok))
    return res


def accuracy_by_meta(model, examples: Sequence[Example], key: str, **kw) -> dict[str, float]:
    ok = exact_match(model, examples, **kw)
    by = defaultdict(list)
    for ex, k in zip(examples, ok):
        by[str(ex.meta.get(key))].append(k)
    res = {g: sum(v) / len(v) for g, v in sorted(by.items())}
    res["all"] = sum(ok) / max(1, len(ok))
    return res


def target_mask(stacked: dict, which: str = "all") -> torch.Tensor:
    """Which targets a loss counts: 'all' real tokens, 'answer' tokens, or 'trained' (weight > 0)."""
    if which == "all":
        return stacked["loss_mask"]
    if which == "answer":
        return stacked["answer_mask"]
    if which == "trained":
        w = stacked.get("loss_weight")
        return stacked["loss_mask"] if w is None else stacked["loss_mask"] & (w > 0)
    raise ValueError(f"which must be 'all', 'answer' or 'trained', got '{which}'.")


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, stacked: dict, which: str = "all") -> float:
    """Mean next-token loss (nats) over the targets ``which`` selects (see :func:`target_mask`) of stacked batches [N, B, T]."""
    model.eval()
    mask = target_mask(stacked, which)
    total, count = 0.0, 0
    for i in range(stacked["input_ids"].shape[0]):
        ids = stacked["input_ids"][i]
        loss, n = masked_lm_loss(model(input_ids=ids).logits, ids, mask[i])
        total += float(loss) * n
        count += n
    return total / max(1, count)


def unigram_counts(stacked: dict, which: str = "all") -> torch.Tensor:
    """Counts of target tokens (vocabulary-sized) over stacked batches."""
    ids = stacked["input_ids"][..., 1:].reshape(-1)
    m = target_mask(stacked, which)[..., 1:].reshape(-1)
    return torch.bincount(ids[m].long(), minlength=VOCAB_SIZE).double()


def unigram_loss(train_counts: torch.Tensor, heldout: dict, which: str = "all") -> float:
    """Cross-entropy (nats) of held-out targets under the add-one-smoothed training unigram distribution."""
    p = (train_counts + 1) / (train_counts + 1).sum()
    held = unigram_counts(heldout, which)
    return float(-(held * p.log()).sum() / held.sum())


def bits(nats: float) -> float:
    return nats / math.log(2)
