"""A zoo model's report (held-out loss, accuracies) and its stated skill (one-hop lookups)."""

from __future__ import annotations

import json
import sys
import time

import torch

from effdepth.zoo import corpus
from effdepth.zoo import evaluate as E
from effdepth.zoo.cache import data_dir
from effdepth.zoo.specs import ZooSpec

ONE_HOP_REQUIRED = 0.95  # the zoo's stated skill: every model follows one in-context pointer (fresh fact sets)


def compute_report(model, spec: ZooSpec, train_data: dict | None = None, progress: bool = False) -> dict:
    """Held-out loss vs a unigram baseline and exact-match accuracies of ``model`` (see :mod:`.evaluate`)."""
    old = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        t0 = time.perf_counter()
        held = corpus.cached_batches(spec.data, 16, data_dir(), "heldout", False)
        if train_data is None:
            train_data = corpus.cached_batches(spec.data, spec.steps, data_dir(), "train", False)
        # unigram statistics from the mixture part of training (after the curriculum), 200 batches
        sample = {k: v[:200] for k, v in train_data.items()}
        sets = corpus.eval_sets(spec.data, spec.n_eval)
        rep = {
            "name": spec.name,
            "spec": json.loads(json.dumps(spec.to_dict())),
            "params": sum(p.numel() for p in model.parameters()),
            "n_layers": spec.n_layers,
            "d_model": spec.d_model,
        }
        for which, key in (("all", ""), ("trained", "_trained"), ("answer", "_answer")):
            rep[f"heldout_loss{key}"] = E.heldout_loss(model, held, which)
            rep[f"unigram_loss{key}"] = E.unigram_loss(E.unigram_counts(sample, which), held, which)
        rep.update(
            {
                "arithmetic_accuracy": E.accuracy_by_level(model, sets["arithmetic"]),
                "arithmetic_n": {
                    str(lv): sum(e.level == lv for e in sets["arithmetic"])
                    for lv in sorted({e.level for e in sets["arithmetic"]})
                },
                "arithmetic_train_split_accuracy": E.accuracy_by_level(model, sets["arithmetic_train_split"]),
                "multihop_accuracy": E.accuracy_by_level(model, sets["multihop"]),
                "multihop_n": {
                    str(h): sum(e.level == h for e in sets["multihop"])
                    for h in sorted({e.level for e in sets["multihop"]})
                },
                "dm_accuracy": E.accuracy_by_meta(model, sets["dm"], "module"),
                "dm_n": len(sets["dm"]),
            }
        )
        rep["eval_seconds"] = round(time.perf_counter() - t0, 1)
        return rep
    finally:
        torch.set_num_threads(old)


def one_hop_check(model, spec: ZooSpec) -> float:
    """One-hop exact match on the check set (``corpus.one_hop_check_set``: fresh fact sets of another
    seed than the reported evaluation), at the spec's torch threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        return E.accuracy_by_level(model, corpus.one_hop_check_set(spec.data, spec.n_eval))["all"]
    finally:
        torch.set_num_threads(old)


def skill(rep: dict) -> dict:
    """Whether a report shows the zoo's stated skill: one-hop exact match ≥ :data:`ONE_HOP_REQUIRED`."""
    one = float(rep["multihop_accuracy"]["1"])
    return {"one_hop": one, "required": ONE_HOP_REQUIRED, "ok": one >= ONE_HOP_REQUIRED}


def skill_warning(name: str, rep: dict) -> str | None:
    """One loud line when a trained model lacks the stated skill (None when it has it)."""
    s = skill(rep)
    if s["ok"]:
        return None
    return (
        f"WARNING: zoo model '{name}' answers only {100 * s['one_hop']:.0f} % of one-hop questions on fresh fact sets "
        f"(the zoo's stated skill is ≥ {100 * s['required']:.0f} %): its training did not get through the lookup phase "
        f"change on this machine, so the chapters measure a model that mostly guesses; please report it with `effdepth zoo report {name}`."
    )


def warn(line: str) -> None:
    print(f"[effdepth] {line}", file=sys.stderr, flush=True)
