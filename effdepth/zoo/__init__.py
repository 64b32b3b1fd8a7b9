"""The zoo: small Llama models trained here, offline, on generated data, so the book runs on a CPU.

Every zoo model is a `transformers.LlamaForCausalLM` of the same width, differing only in depth,
trained from the same seed on the same batches of the same mixture (graded sums, in-context
multi-hop questions, DeepMind arithmetic; see :mod:`effdepth.zoo.corpus`) with the same
character-level tokenizer (:mod:`effdepth.zoo.tokenizer`, adds ``<bos>``).

Public interface::

    MODELS            name -> ZooSpec
    DEFAULT, SHALLOW, DEEP
    cache_dir()       $EFFDEPTH_CACHE or the platform cache folder; models in cache_dir()/zoo/<name>/
    ensure(name)      the model's folder, trained first if missing
    train_all(names)  ensure several (default: all)
    report(name)      the model's report.json as a dict (training time, loss history, accuracies)

`ensure` also accepts a `ZooSpec` (for tests and experiments); its folder is named after the spec.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .corpus import DataSpec
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, zoo_tokenizer

__all__ = [
    "ZooSpec",
    "MODELS",
    "DEFAULT",
    "SHALLOW",
    "DEEP",
    "cache_dir",
    "ensure",
    "train_all",
    "report",
    "build_model",
    "compute_report",
    "zoo_tokenizer",
]


@dataclass(frozen=True)
class ZooSpec:
    """Everything that determines a zoo model (architecture, optimisation, data, seed)."""

    name: str
    n_layers: int
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 256
    steps: int = 1400  # mixture steps, after the walk curriculum (DataSpec.curriculum_steps)
    lr: float = 2e-3
    warmup: int = 50
    beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    loss_on: str = "all"
    answer_weight: float = 1.0
    seed: int = 0
    threads: int = 1  # torch threads of the curriculum (and the evaluation)
    mixture_threads: int = 1  # torch threads of the mixture phase (part of the spec: results depend on it)
    checkpoint_every: int = 100
    # The walk curriculum holds the peak lr (after warm-up) instead of decaying it: the lookup's phase
    # change comes late (walk loss ≈ 1.0 for ~700 steps, then a drop), and a cosine decay toward the
    # 1 200-step cap slowed it so much that seeds 0 and 2 ran into the cap; at the constant peak lr
    # both stopped early (920 and 860 steps, at 1 and 2 torch threads alike).
    curriculum_min_lr_ratio: float = 1.0
    # Where training left the stated skill missing (one-hop < ONE_HOP_REQUIRED on a check set of fresh
    # fact sets, not the reported evaluation set): up to skill_rounds warm restarts of the mixture,
    # skill_steps each (warm-up to the peak lr again, cosine decay), until the check passes.
    skill_rounds: int = 2
    skill_steps: int = 400
    data: DataSpec = field(default_factory=DataSpec)
    n_eval: int = 100  # evaluation questions per level / hop count

    def config(self):
        return llama_config(self.n_layers, self.d_model, self.n_heads, self.d_ff)

    def to_dict(self) -> dict:
        return asdict(self)


def llama_config(n_layers: int, d_model: int, n_heads: int, d_ff: int):
    """The zoo's Llama configuration: its character vocabulary, untied embeddings, full attention heads."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=d_model,
        intermediate_size=d_ff,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def _zoo(*specs: ZooSpec) -> dict[str, ZooSpec]:
    return {s.name: s for s in specs}


MODELS: dict[str, ZooSpec] = _zoo(
    ZooSpec("llama-2l", n_layers=2),
    ZooSpec("llama-4l", n_layers=4),
    # One torch thread throughout: one and two threads give bit-identical weights at these sizes (30
    # mixture steps compared tensor by tensor), and two threads on a machine whose other core is busy
    # (make book runs a second job beside the zoo) ran 1.8× slower than one.
    ZooSpec("llama-8l", n_layers=8),
)
DEFAULT = "llama-8l"
SHALLOW = "llama-4l"
DEEP = "llama-8l"


def cache_dir() -> Path:
    """``$EFFDEPTH_CACHE`` if set, else the platform's user cache folder for effdepth."""
    env = os.environ.get("EFFDEPTH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("effdepth"))


def _spec(name_or_spec) -> ZooSpec:
    if isinstance(name_or_spec, ZooSpec):
        return name_or_spec
    name = str(name_or_spec).removeprefix("zoo:")
    if name not in MODELS:
        raise ValueError(f"Unknown zoo model '{name}'. The zoo has: {', '.join(MODELS)}.")
    return MODELS[name]


def folder(name_or_spec) -> Path:
    """Where a zoo model lives (whether or not it is trained yet)."""
    return cache_dir() / "zoo" / _spec(name_or_spec).name


def is_trained(name_or_spec) -> bool:
    from .train import is_complete

    return is_complete(folder(name_or_spec))


def build_model(spec: ZooSpec):
    """A freshly initialised model of ``spec`` (seeded), in float32."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(spec.config()).float()


def ensure(name_or_spec, progress: bool = True) -> Path:
    """The folder of a zoo model, training it first if it is missing.

    Training happens in ``<folder>.partial`` (with periodic checkpoints, so an interrupted run
    resumes) and the finished folder is renamed into place, so a folder that exists is complete.
    Raises ValueError for a name that is not in :data:`MODELS`.
    """
    spec = _spec(name_or_spec)
    final = folder(spec)
    if _is_current(spec):
        return final
    with _model_lock(spec):  # another process training the same model: wait, then reuse its result
        if _is_current(spec):
            return final
        if is_trained(spec):
            print(f"[effdepth] zoo model '{spec.name}' in {final} was trained with another spec (older effdepth?); retraining it.", flush=True)
        _train_into(spec, final, progress)
    return final


@contextmanager
def _model_lock(spec: ZooSpec):
    """An exclusive lock on ``<cache>/zoo/<name>.lock`` (``fcntl.flock``) for as long as a process
    trains the model; a second process says that it waits, and waits."""
    import fcntl

    path = folder(spec).with_name(spec.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[effdepth] zoo model '{spec.name}' is being trained by another process (lock {path}); waiting for it.", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stored_spec(final: Path) -> dict:
    return json.loads((final / "report.json").read_text()).get("spec", {})


def _is_current(spec: ZooSpec) -> bool:
    return is_trained(spec) and _stored_spec(folder(spec)) == json.loads(json.dumps(spec.to_dict()))


def _train_into(spec: ZooSpec, final: Path, progress: bool) -> None:
    import torch

    from . import corpus
    from . import train as T

    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    marker = partial / "spec.json"
    spec_json = json.dumps(spec.to_dict(), sort_keys=True)
    if marker.exists() and marker.read_text() != spec_json:
        shutil.rmtree(partial)  # a partial run of another spec: start over
        partial.mkdir(parents=True)
    marker.write_text(spec_json)

    cache = cache_dir() / "zoo" / "_data"
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
    r1 = T.TrainResult(steps=0, seconds=0.0)
    cur = {"loss_mask": torch.zeros(0, dtype=torch.bool)}
    if spec.data.curriculum_steps:
        cur = corpus.cached_batches(spec.data, spec.data.curriculum_steps, cache, "curriculum", False)
        cfg1 = T.TrainConfig(steps=spec.data.curriculum_steps, stop_below=spec.data.curriculum_stop, min_lr_ratio=spec.curriculum_min_lr_ratio, **common)
        r1 = T.train(model, T.StackedBatches(cur), cfg1, checkpoint_dir=partial / "curriculum", progress=f"zoo {spec.name} curriculum" if progress else False)
        if not r1.stopped_early and r1.history:
            warn(
                f"zoo model '{spec.name}': the walk curriculum reached its cap of {r1.steps} steps with the walk loss at "
                f"{r1.history[-1]['loss']:.2f} (the lookup counts as learned below {spec.data.curriculum_stop}); continuing with the mixture."
            )
    # phase 2: the mixture
    data = corpus.cached_batches(spec.data, spec.steps, cache, "train", progress)
    cfg2 = T.TrainConfig(steps=spec.steps, loss_on=spec.loss_on, answer_weight=spec.answer_weight, **dict(common, threads=spec.mixture_threads))
    r2 = T.train(model, T.StackedBatches(data), cfg2, checkpoint_dir=partial, progress=f"zoo {spec.name}" if progress else False)

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
        r = T.train(model, T.StackedBatches(part), replace(cfg2, steps=spec.skill_steps), checkpoint_dir=partial / f"round-{k}", progress=f"zoo {spec.name} round {k}" if progress else False)
        rounds.append({"round": k, "one_hop_check_before": before, "steps": r.steps, "seconds": round(r.seconds, 1), "history": r.history, "tokens": int(part["loss_mask"][: r.steps].sum())})
    extra_steps = sum(x["steps"] for x in rounds)
    skill_check = {"one_hop_check": one_hop_check(model, spec), "rounds": [{k: v for k, v in x.items() if k != "history"} for x in rounds]} if rounds else None

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
            "tokens_seen": int(cur["loss_mask"][: r1.steps].sum() + data["loss_mask"][: spec.steps].sum()) + sum(x["tokens"] for x in rounds),
            "history": [dict(h, phase="curriculum") for h in r1.history]
            + [dict(h, step=h["step"] + r1.steps, phase="mixture") for h in r2.history]
            + [dict(h, step=h["step"] + off, phase="mixture", round=x["round"]) for x, off in zip(rounds, offsets) for h in x["history"]],
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
    T.save_folder(model, partial, final, rep)


def compute_report(model, spec: ZooSpec, train_data: dict | None = None, progress: bool = False) -> dict:
    """Held-out loss vs a unigram baseline and exact-match accuracies of ``model`` (see :mod:`.evaluate`)."""
    import torch

    from . import corpus
    from . import evaluate as E

    old = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        t0 = time.perf_counter()
        held = corpus.cached_batches(spec.data, 16, cache_dir() / "zoo" / "_data", "heldout", False)
        if train_data is None:
            train_data = corpus.cached_batches(spec.data, spec.steps, cache_dir() / "zoo" / "_data", "train", False)
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
        rep.update({
            "arithmetic_accuracy": E.accuracy_by_level(model, sets["arithmetic"]),
            "arithmetic_n": {str(lv): sum(e.level == lv for e in sets["arithmetic"]) for lv in sorted({e.level for e in sets["arithmetic"]})},
            "arithmetic_train_split_accuracy": E.accuracy_by_level(model, sets["arithmetic_train_split"]),
            "multihop_accuracy": E.accuracy_by_level(model, sets["multihop"]),
            "multihop_n": {str(h): sum(e.level == h for e in sets["multihop"]) for h in sorted({e.level for e in sets["multihop"]})},
            "dm_accuracy": E.accuracy_by_meta(model, sets["dm"], "module"),
            "dm_n": len(sets["dm"]),
        })
        rep["eval_seconds"] = round(time.perf_counter() - t0, 1)
        return rep
    finally:
        torch.set_num_threads(old)


ONE_HOP_REQUIRED = 0.95  # the zoo's stated skill: every model follows one in-context pointer (fresh fact sets)


def one_hop_check(model, spec: ZooSpec) -> float:
    """One-hop exact match on the check set (``corpus.one_hop_check_set``: fresh fact sets of another
    seed than the reported evaluation), at the spec's torch threads."""
    import torch

    from . import corpus
    from . import evaluate as E

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
    import sys

    print(f"[effdepth] {line}", file=sys.stderr, flush=True)


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
    specs = [_spec(n) for n in (list(MODELS) if names is None else names)]  # fail before training anything
    todo = sorted((s for s in specs if not _is_current(s)), key=lambda s: -s.n_layers * s.d_model**2)
    workers = min(len(todo), workers or os.cpu_count() or 1)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        from . import corpus

        for data in {s.data for s in todo}:
            steps = max(s.steps for s in todo if s.data == data)
            corpus.cached_batches(data, data.curriculum_steps, cache_dir() / "zoo" / "_data", "curriculum", False)
            corpus.cached_batches(data, steps, cache_dir() / "zoo" / "_data", "train", progress)
        print(f"[effdepth] training {len(todo)} zoo models in {workers} processes: {', '.join(s.name for s in todo)}", flush=True)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for s, _ in zip(todo, pool.map(_ensure_in_worker, todo)):
                print(f"[effdepth] zoo:{s.name} trained", flush=True)
    return {s.name: ensure(s, progress=progress) for s in specs}


def check(names=None, seeds=(0, 1, 2), threads=(1, 2), progress: bool = False, workers: int | None = None) -> list[dict]:
    """Train each named zoo model (default: :data:`DEFAULT`) once per init seed × torch thread count
    and say whether each has the stated skill (one-hop ≥ :data:`ONE_HOP_REQUIRED`).

    The variants keep the data (same batches) and change only the initialisation seed and the
    threads of both phases, the two things that decide on another machine whether the lookup
    forms; they live in ``<cache>/zoo/<name>.check-s<seed>-t<threads>`` (reused when current).
    Returns one row per variant: model, seed, threads, one-hop and 2-4 hop accuracy, ok,
    curriculum steps, training seconds.
    """
    base = [_spec(n) for n in ([DEFAULT] if names is None else names)]
    variants = [
        replace(s, name=f"{s.name}.check-s{seed}-t{t}", seed=seed, threads=t, mixture_threads=t)
        for s in base for seed in seeds for t in threads
    ]
    train_all(variants, progress=progress, workers=workers)
    rows = []
    for s, v in zip([s for s in base for _ in seeds for _ in threads], variants):
        r = json.loads((folder(v) / "report.json").read_text())
        hops = r["multihop_accuracy"]
        rows.append({
            "model": s.name, "seed": v.seed, "threads": v.threads,
            **{f"{h}-hop": hops[h] for h in hops if h != "all"},
            "ok": skill(r)["ok"], "curriculum_steps": r["curriculum_steps"], "train_seconds": r["train_seconds"],
        })
    return rows


def _ensure_in_worker(spec: ZooSpec) -> Path:
    return ensure(spec, progress=True)
