"""Training §3.5's grid with the one training loop (:func:`effdepth.training.train`): batches of
packed problems, one model per (arch, objective, seed) cell, the fine-tuning analogue (App. D.5),
and :class:`Grid`, the trained models and their reports.

Models are cached in ``grid_dir(spec) / <arch>-<objective>-s<seed>`` (written to ``….partial``
with checkpoints first, so an interrupted run resumes)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from effdepth.data import arithmetic as A
from effdepth.data import multihop as M
from effdepth.objective.evaluate import accuracy
from effdepth.objective.grid import ARCHS, OBJECTIVES, GridSpec, cell_folders, grid_dir, run_name
from effdepth.objective.models import build_model, count_params, load_folder
from effdepth.objective.problems import eval_sets, training_pool
from effdepth.training import (
    DeviceBatches,
    TrainConfig,
    batches,
    encode_pair,
    is_complete,
    pack,
    save_folder,
    stack_batches,
    train,
)


def arithmetic_batches(pairs: Sequence[tuple[str, str]], spec: GridSpec, steps: int, seed: int) -> dict:
    """``steps`` stacked batches of packed windows; the order of the problems is shuffled with ``seed``
    (the pool is reshuffled when a run needs more windows than one pass gives)."""
    need = steps * spec.batch_size
    windows: list = []
    epoch = 0
    while len(windows) < need:
        order = list(pairs)
        random.Random(f"{seed}-{epoch}").shuffle(order)
        enc = (encode_pair(*A.format_example(q, a)) for q, a in order)
        windows += list(pack(enc, spec.window, too_long="skip", lookahead=16))
        epoch += 1
    return stack_batches(list(batches(iter(windows[:need]), spec.batch_size)))


def multihop_batches(spec: GridSpec, steps: int, seed: int) -> dict:
    """Packed windows of multi-hop questions only (the pre-training distribution of App. D.5)."""
    rng = random.Random(f"multihop-pretrain-{seed}")

    def stream():
        while True:
            p, a, _ = M.make_question(rng, rng.randint(1, 4))
            yield encode_pair(p, a)

    it = batches(pack(stream(), spec.window, too_long="skip", lookahead=16), spec.batch_size)
    return stack_batches([next(it) for _ in range(steps)])


def train_run(
    name: str,
    model,
    data: dict,
    spec: GridSpec,
    steps: int,
    loss_on: str,
    lr: float,
    device: str,
    progress: bool,
    extra: dict,
    sets: dict | None,
) -> Path:
    """Train ``model`` into ``grid_dir(spec)/name`` (resuming from ``name.partial``) and write its report."""
    final = grid_dir(spec) / name
    if is_complete(final):
        return final
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(
        steps=steps,
        lr=lr,
        warmup=min(spec.warmup, max(1, steps // 10)),
        weight_decay=spec.weight_decay,
        grad_clip=spec.grad_clip,
        loss_on=loss_on,
        checkpoint_every=spec.checkpoint_every,
        threads=spec.threads if str(device) == "cpu" else None,
    )
    model.to(device)
    cpu0 = time.process_time()
    res = train(
        model, DeviceBatches(data, device), cfg, checkpoint_dir=partial, progress=f"{name}" if progress else False
    )
    cpu = time.process_time() - cpu0
    report = {
        "name": name,
        "spec": asdict(spec),
        "params": count_params(model),
        "steps": steps,
        "loss_on": loss_on,
        "train_seconds": round(res.seconds, 1),
        "train_cpu_seconds": round(cpu, 1),  # this process's CPU time (of this session, if resumed)
        "final_loss": res.history[-1]["loss"] if res.history else None,
        "history": res.history,
        "device": str(device),
        "torch_threads": cfg.threads or torch.get_num_threads(),
        "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        **extra,
    }
    if sets is not None:
        t0 = time.perf_counter()
        ev = accuracy(model, sets)
        report.update(accuracy=ev["accuracy"], correct=ev["correct"], eval_seconds=round(time.perf_counter() - t0, 1))
    save_folder(model, partial, final, report)
    return final


def train_cell(
    arch: str,
    objective: str,
    seed: int,
    spec: GridSpec,
    device: str = "cpu",
    progress: bool = True,
    pool=None,
    sets=None,
) -> Path:
    """Train (or find cached) one grid model; returns its folder."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got '{objective}'.")
    name = run_name(arch, objective, seed)
    final = grid_dir(spec) / name
    if is_complete(final):
        return final
    pool = training_pool(spec, progress=progress) if pool is None else pool
    sets = eval_sets(spec) if sets is None else sets
    data = arithmetic_batches(pool, spec, spec.steps, seed)
    model = build_model(arch, spec, seed)
    extra = {"arch": arch, "objective": objective, "seed": seed, "config": model.config.to_dict()}
    return train_run(name, model, data, spec, spec.steps, objective, spec.lr, device, progress, extra, sets)


@dataclass
class Grid:
    """Trained grid models: ``folders[(arch, objective, seed)]`` and their reports."""

    spec: GridSpec
    folders: dict
    reports: dict = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted({k[2] for k in self.folders})

    def report(self, arch: str, objective: str, seed: int) -> dict:
        key = (arch, objective, seed)
        if key not in self.reports:
            self.reports[key] = json.loads((self.folders[key] / "report.json").read_text())
        return self.reports[key]

    def load(self, arch: str, objective: str, seed: int, device: str = "cpu", dtype="float32"):
        """The model as an effdepth `Model` (nnsight-wrapped, with its adapter), labelled by its cell."""
        return load_folder(self.folders[(arch, objective, seed)], f"grid:{arch}-{objective}-s{seed}", device, dtype)

    def accuracy_frame(self) -> pd.DataFrame:
        """One row per (arch, objective, seed, split, module) with the exact-match accuracy."""
        rows = []
        for arch, obj, seed in sorted(self.folders):
            rep = self.report(arch, obj, seed)
            for split, accs in rep["accuracy"].items():
                for module, acc in accs.items():
                    rows.append(
                        {
                            "arch": arch,
                            "objective": obj,
                            "seed": seed,
                            "split": split,
                            "module": module,
                            "accuracy": acc,
                        }
                    )
        return pd.DataFrame(rows)

    def summary(self, modules: Sequence[str] = ("all",)) -> pd.DataFrame:
        """Mean, sample standard deviation, min and max over seeds of the accuracy, per
        (arch, objective, split, module) for ``modules`` ('all' = every module of the split)."""
        f = self.accuracy_frame()
        f = f[f.module.isin(modules)]
        g = f.groupby(["split", "module", "arch", "objective"], sort=False)["accuracy"]
        out = g.agg(
            mean="mean",
            sd=lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan"),
            lo="min",
            hi="max",
            n="count",
        )
        return out.reset_index()

    def train_seconds(self) -> pd.DataFrame:
        rows = [
            {
                "arch": a,
                "objective": o,
                "seed": s,
                "params": self.report(a, o, s)["params"],
                "train_seconds": self.report(a, o, s)["train_seconds"],
                "train_cpu_seconds": self.report(a, o, s).get("train_cpu_seconds", float("nan")),
            }
            for (a, o, s) in sorted(self.folders)
        ]
        return pd.DataFrame(rows)


def pretrain(spec: GridSpec, seed: int, device: str = "cpu", progress: bool = True) -> Path:
    """A Transformer of the grid's size trained on multi-hop questions only (all-token loss): the
    'pre-trained model' of the fine-tuning analogue."""
    name = f"pretrained-multihop-s{seed}"
    final = grid_dir(spec) / name
    if not is_complete(final):
        model = build_model("transformer", spec, seed)
        data = multihop_batches(spec, spec.pretrain_steps, seed)
        extra = {"arch": "transformer", "objective": "all", "seed": seed, "data": "multihop"}
        train_run(
            name, model, data, spec, spec.pretrain_steps, "all", spec.lr, device, progress, extra, eval_sets(spec)
        )
    return final


def finetune(spec: GridSpec, objective: str, seed: int, device: str = "cpu", progress: bool = True) -> Path:
    """The pre-trained model (`pretrain`) fine-tuned on the grid's arithmetic data with ``objective``."""
    from transformers import AutoModelForCausalLM

    name = f"finetuned-{objective}-s{seed}"
    final = grid_dir(spec) / name
    if not is_complete(final):
        pre = pretrain(spec, seed, device, progress)
        model = AutoModelForCausalLM.from_pretrained(pre, dtype=torch.float32, trust_remote_code=False)
        data = arithmetic_batches(training_pool(spec, progress=progress), spec, spec.finetune_steps, seed + 1000)
        extra = {"arch": "transformer", "objective": objective, "seed": seed, "data": "arithmetic", "init": pre.name}
        train_run(
            name,
            model,
            data,
            spec,
            spec.finetune_steps,
            objective,
            spec.finetune_lr,
            device,
            progress,
            extra,
            eval_sets(spec),
        )
    return final


def _job(job: tuple, spec: GridSpec, device: str, progress: bool) -> str:
    kind, *args = job
    if kind == "cell":
        return str(train_cell(*args, spec, device, progress))
    if kind == "pretrain":
        return str(pretrain(spec, *args, device, progress))
    return str(finetune(spec, *args, device, progress))


def _run_jobs(phases: list[list[tuple]], spec: GridSpec, device: str, progress: bool, workers: int) -> None:
    """Run job phases in order (a phase's jobs may run in parallel, in ``workers`` processes of
    ``spec.threads // workers`` torch threads each: on a small CPU two single-threaded trainings
    finish sooner than one two-threaded one)."""
    phases = [p for p in phases if p]
    if not phases:
        return
    training_pool(spec, progress=progress), eval_sets(spec)  # generated once, here, before any worker reads them
    if workers <= 1:
        for phase in phases:
            for job in phase:
                _job(job, spec, device, progress)
        return
    wspec = replace(spec, threads=max(1, (spec.threads or torch.get_num_threads()) // workers))
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        for phase in phases:
            for fut in [ex.submit(_job, job, wspec, device, progress) for job in phase]:
                fut.result()


def default_workers(device: str = "cpu") -> int:
    return min(2, os.cpu_count() or 1) if str(device) == "cpu" else 1


def train_grid(
    spec: GridSpec | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    device: str = "cpu",
    progress: bool = True,
    archs=ARCHS,
    objectives=OBJECTIVES,
    finetune_seed: int | None = None,
    workers: int | None = None,
) -> Grid:
    """Train every (arch, objective, seed) model that is not cached yet (and, with ``finetune_seed``,
    the fine-tuning analogue's models of that seed); returns the `Grid`. ``workers``: parallel
    training processes (default: 2 on a CPU, 1 on a GPU)."""
    spec = spec or GridSpec()
    folders = cell_folders(spec, seeds, archs, objectives)
    first = [("cell", *k) for k, f in folders.items() if not is_complete(f)]
    second = []
    if finetune_seed is not None:
        if not is_complete(grid_dir(spec) / f"pretrained-multihop-s{finetune_seed}"):
            first.insert(0, ("pretrain", finetune_seed))
        second = [
            ("finetune", o, finetune_seed)
            for o in OBJECTIVES
            if not is_complete(grid_dir(spec) / f"finetuned-{o}-s{finetune_seed}")
        ]
    _run_jobs([first, second], spec, device, progress, default_workers(device) if workers is None else workers)
    return Grid(spec, folders)


def finetune_runs(
    spec: GridSpec | None = None, seed: int = 0, device: str = "cpu", progress: bool = True, workers: int | None = None
) -> dict[str, Path]:
    """The fine-tuning analogue (App. D.5): a Transformer pre-trained on multi-hop questions only
    ('pretrained'), then fine-tuned on the grid's arithmetic data with each objective ('all',
    'answer'); trains what is missing and returns the three folders."""
    spec = spec or GridSpec()
    out = {"pretrained": grid_dir(spec) / f"pretrained-multihop-s{seed}"}
    out.update({o: grid_dir(spec) / f"finetuned-{o}-s{seed}" for o in OBJECTIVES})
    first = [] if is_complete(out["pretrained"]) else [("pretrain", seed)]
    second = [("finetune", o, seed) for o in OBJECTIVES if not is_complete(out[o])]
    _run_jobs([first, second], spec, device, progress, default_workers(device) if workers is None else workers)
    return out
