"""Building the zoo into the cache: :func:`ensure` one model, :func:`train_all` several side by side,
:func:`check` the stated skill over seeds and thread counts, :func:`report` a trained model."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from effdepth.zoo import corpus
from effdepth.zoo.cache import data_dir, folder, is_current, is_trained, model_lock
from effdepth.zoo.reporting import skill
from effdepth.zoo.specs import DEFAULT, MODELS, ZooSpec, spec_of
from effdepth.zoo.train import train_into


def ensure(name_or_spec, progress: bool = True) -> Path:
    """The folder of a zoo model, training it first if it is missing.

    Training happens in ``<folder>.partial`` (with periodic checkpoints, so an interrupted run
    resumes) and the finished folder is renamed into place, so a folder that exists is complete.
    Raises ValueError for a name that is not in :data:`MODELS`.
    """
    spec = spec_of(name_or_spec)
    final = folder(spec)
    if is_current(spec):
        return final
    with model_lock(spec):  # another process training the same model: wait, then reuse its result
        if is_current(spec):
            return final
        if is_trained(spec):
            print(
                f"[effdepth] zoo model '{spec.name}' in {final} was trained with another spec (older effdepth?); retraining it.",
                flush=True,
            )
        train_into(spec, final, progress)
    return final


def report(name_or_spec) -> dict:
    """The stored report of a trained zoo model (trains it first if needed)."""
    return json.loads((ensure(name_or_spec) / "report.json").read_text())


def train_all(names=None, progress: bool = True, workers: int | None = None) -> dict[str, Path]:
    """Ensure every named zoo model (default: all of :data:`MODELS`) is trained; name -> folder.

    Models still to train are trained side by side in ``workers`` processes (default: one per CPU
    core, at most one per model), deepest first, each with the torch threads its spec names, so a
    2-core machine trains the deepest model on one core and the others one after another on the
    second. Each process
    trains exactly what :func:`ensure` would (same seed, same batches), so results do not depend
    on ``workers``; the shared training batches are built once, before the processes start.
    """
    specs = [spec_of(n) for n in (list(MODELS) if names is None else names)]  # fail before training anything
    todo = sorted((s for s in specs if not is_current(s)), key=lambda s: -s.n_layers * s.d_model**2)
    workers = min(len(todo), workers or os.cpu_count() or 1)
    if workers > 1:
        for data in {s.data for s in todo}:
            steps = max(s.steps for s in todo if s.data == data)
            corpus.cached_batches(data, data.curriculum_steps, data_dir(), "curriculum", False)
            corpus.cached_batches(data, steps, data_dir(), "train", progress)
        print(
            f"[effdepth] training {len(todo)} zoo models in {workers} processes: {', '.join(s.name for s in todo)}",
            flush=True,
        )
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for s, _ in zip(todo, pool.map(_ensure_in_worker, todo)):
                print(f"[effdepth] zoo:{s.name} trained", flush=True)
    return {s.name: ensure(s, progress=progress) for s in specs}


def check(
    names=None, seeds=(0, 1, 2), threads=(1, 2), progress: bool = False, workers: int | None = None
) -> list[dict]:
    """Train each named zoo model (default: :data:`DEFAULT`) once per init seed × torch thread count
    and say whether each has the stated skill (one-hop ≥ :data:`ONE_HOP_REQUIRED`).

    The variants keep the data (same batches) and change only the initialisation seed and the
    threads of both phases, the two things that decide on another machine whether the lookup
    forms; they live in ``<cache>/zoo/<name>.check-s<seed>-t<threads>`` (reused when current).
    Returns one row per variant: model, seed, threads, one-hop and 2-4 hop accuracy, ok,
    curriculum steps, training seconds.
    """
    base = [spec_of(n) for n in ([DEFAULT] if names is None else names)]
    variants = [
        replace(s, name=f"{s.name}.check-s{seed}-t{t}", seed=seed, threads=t, mixture_threads=t)
        for s in base
        for seed in seeds
        for t in threads
    ]
    train_all(variants, progress=progress, workers=workers)
    rows = []
    for s, v in zip([s for s in base for _ in seeds for _ in threads], variants):
        r = json.loads((folder(v) / "report.json").read_text())
        hops = r["multihop_accuracy"]
        rows.append(
            {
                "model": s.name,
                "seed": v.seed,
                "threads": v.threads,
                **{f"{h}-hop": hops[h] for h in hops if h != "all"},
                "ok": skill(r)["ok"],
                "curriculum_steps": r["curriculum_steps"],
                "train_seconds": r["train_seconds"],
            }
        )
    return rows


def _ensure_in_worker(spec: ZooSpec) -> Path:
    return ensure(spec, progress=True)
