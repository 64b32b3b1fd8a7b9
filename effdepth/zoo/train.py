"""Training one zoo model into its cache folder: the walk curriculum, the mixture, and extra rounds
of the mixture while the stated skill is missing (with :func:`effdepth.training.train`)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from effdepth.training import StackedBatches, TrainConfig, TrainResult, save_folder, train
from effdepth.zoo import corpus
from effdepth.zoo.cache import data_dir
from effdepth.zoo.reporting import ONE_HOP_REQUIRED, compute_report, one_hop_check, skill, skill_warning, warn
from effdepth.zoo.specs import ZooSpec


def build_model(spec: ZooSpec):
    """A freshly initialised model of ``spec`` (seeded), in float32."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(spec.config()).float()


def train_into(spec: ZooSpec, final: Path, progress: bool) -> None:
    """Train ``spec`` in ``<final>.partial`` (resuming from its checkpoints) and rename it to ``final``."""
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    marker = partial / "spec.json"
    spec_json = json.dumps(spec.to_dict(), sort_keys=True)
    if marker.exists() and marker.read_text() != spec_json:
        shutil.rmtree(partial)  # a partial run of another spec: start over
        partial.mkdir(parents=True)
    marker.write_text(spec_json)

    cache = data_dir()
    model = build_model(spec)
    common = dict(
        lr=spec.lr,
        warmup=spec.warmup,
        weight_decay=spec.weight_decay,
        betas=(0.9, spec.beta2),
        grad_clip=spec.grad_clip,
        checkpoint_every=spec.checkpoint_every,
        threads=spec.threads,
    )
    # phase 1: the walk curriculum, until the walk loss is low (or curriculum_steps)
    r1 = TrainResult(steps=0, seconds=0.0)
    cur = {"loss_mask": torch.zeros(0, dtype=torch.bool)}
    if spec.data.curriculum_steps:
        cur = corpus.cached_batches(spec.data, spec.data.curriculum_steps, cache, "curriculum", False)
        cfg1 = TrainConfig(
            steps=spec.data.curriculum_steps,
            stop_below=spec.data.curriculum_stop,
            min_lr_ratio=spec.curriculum_min_lr_ratio,
            **common,
        )
        r1 = train(
            model,
            StackedBatches(cur),
            cfg1,
            checkpoint_dir=partial / "curriculum",
            progress=f"zoo {spec.name} curriculum" if progress else False,
        )
        if not r1.stopped_early and r1.history:
            warn(
                f"zoo model '{spec.name}': the walk curriculum reached its cap of {r1.steps} steps with the walk loss at "
                f"{r1.history[-1]['loss']:.2f} (the lookup counts as learned below {spec.data.curriculum_stop}); continuing with the mixture."
            )
    # phase 2: the mixture
    data = corpus.cached_batches(spec.data, spec.steps, cache, "train", progress)
    cfg2 = TrainConfig(
        steps=spec.steps,
        loss_on=spec.loss_on,
        answer_weight=spec.answer_weight,
        **dict(common, threads=spec.mixture_threads),
    )
    r2 = train(
        model, StackedBatches(data), cfg2, checkpoint_dir=partial, progress=f"zoo {spec.name}" if progress else False
    )

    # phase 3, only where the stated skill is missing: warm restarts of the mixture while it is
    rounds = []
    for k in range(1, spec.skill_rounds + 1):
        before = one_hop_check(model, spec)
        if before >= ONE_HOP_REQUIRED:
            break
        warn(
            f"zoo model '{spec.name}': one-hop {100 * before:.0f} % on the check set after training (stated skill ≥ "
            f"{100 * ONE_HOP_REQUIRED:.0f} %); extra round {k} of {spec.skill_rounds}: {spec.skill_steps} more mixture steps from the peak lr."
        )
        start = ((k - 1) * spec.skill_steps) % max(1, spec.steps - spec.skill_steps)
        part = {key: v[start : start + spec.skill_steps] for key, v in data.items()}
        r = train(
            model,
            StackedBatches(part),
            replace(cfg2, steps=spec.skill_steps),
            checkpoint_dir=partial / f"round-{k}",
            progress=f"zoo {spec.name} round {k}" if progress else False,
        )
        rounds.append(
            {
                "round": k,
                "one_hop_check_before": before,
                "steps": r.steps,
                "seconds": round(r.seconds, 1),
                "history": r.history,
                "tokens": int(part["loss_mask"][: r.steps].sum()),
            }
        )
    extra_steps = sum(x["steps"] for x in rounds)
    skill_check = (
        {
            "one_hop_check": one_hop_check(model, spec),
            "rounds": [{k: v for k, v in x.items() if k != "history"} for x in rounds],
        }
        if rounds
        else None
    )

    model.eval()
    rep = compute_report(model, spec, data, progress=progress)
    offsets = [r1.steps + r2.steps + sum(x["steps"] for x in rounds[:i]) for i in range(len(rounds))]
    rep.update(
        {
            "train_seconds": round(r1.seconds + r2.seconds + sum(x["seconds"] for x in rounds), 1),
            "curriculum_steps": r1.steps,
            "curriculum_seconds": round(r1.seconds, 1),
            "extra_rounds": skill_check,
            "steps": r1.steps + r2.steps + extra_steps,
            "tokens_seen": int(cur["loss_mask"][: r1.steps].sum() + data["loss_mask"][: spec.steps].sum())
            + sum(x["tokens"] for x in rounds),
            "history": [dict(h, phase="curriculum") for h in r1.history]
            + [dict(h, step=h["step"] + r1.steps, phase="mixture") for h in r2.history]
            + [
                dict(h, step=h["step"] + off, phase="mixture", round=x["round"])
                for x, off in zip(rounds, offsets)
                for h in x["history"]
            ],
            "torch_threads": {"curriculum": spec.threads, "mixture": spec.mixture_threads},
            "torch_version": torch.__version__,
            "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    rep["skill"] = skill(rep)
    if not rep["skill"]["ok"]:
        warn(skill_warning(spec.name, rep))
    for sub in ["curriculum"] + [f"round-{x['round']}" for x in rounds]:
        shutil.rmtree(partial / sub, ignore_errors=True)
    marker.unlink(missing_ok=True)
    save_folder(model, partial, final, rep)
