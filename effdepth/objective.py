"""§3.5 / App. D.5: is fixed-depth computation caused by the objective or by the architecture?

A 2 × 2 grid of small models trained here from scratch on DeepMind Mathematics arithmetic
(``arithmetic__*`` modules, ``"Q: {question} A: {answer}"``, packed into windows, never split):

* architecture: a standard pre-norm Transformer (``LlamaForCausalLM``) or MoEUT
  (:mod:`effdepth.moeut`, shared layers repeated in groups, σ-MoE and SwitchHead), at matched
  parameter count;
* objective: next-token loss on every token (``"all"``, like an LLM) or on the answer tokens only
  (``"answer"``).

Every cell is trained for several seeds (the seed sets the initialisation and the order of the
training examples; both architectures of a seed see the same batches). Each model is evaluated by
teacher-forced greedy exact match per module on the generator's ``interpolate`` and ``extrapolate``
splits, and its depth use is measured with residual erasure (SPEC §4a, the erasing vector the mean
residual of one counterfactual example) and the depth score (SPEC §4c).

The fine-tuning analogue (App. D.5) pre-trains a Transformer of the same size on the multi-hop
corpus only, then fine-tunes it on the arithmetic data with each objective.

Public interface::

    GridSpec(...)                         sizes, steps, data; .at_scale(k) for a bigger (GPU) run
    train_grid(spec, seeds, device)       -> Grid (trains what is missing, reads the rest from the cache)
    Grid.accuracy_frame() / .summary()    per-model accuracies / mean ± spread over seeds
    Grid.load(arch, objective, seed)      -> effdepth Model (nnsight-wrapped, like load_model)
    finetune_runs(spec, seed, device)     -> {"pretrained", "all", "answer"} folders
    erasure_depth(result)                 scalar summary of an erasure heatmap

Models are cached in ``effdepth.zoo.cache_dir() / "grid" / <spec key> / <arch>-<objective>-s<seed>``
(written to ``….partial`` with checkpoints first, so an interrupted run resumes).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .data import arithmetic as A
from .data.examples import Example
from .zoo.evaluate import exact_match
from .zoo.train import is_complete, save_folder

ARCHS = ("transformer", "moeut")
OBJECTIVES = ("all", "answer")
ARCH_LABEL = {"transformer": "Transformer", "moeut": "MoEUT"}
OBJECTIVE_LABEL = {"all": "all-token loss", "answer": "answer-only loss"}
SPLITS = ("interpolate", "extrapolate")

# Training modules whose texts fit the default window, and their extrapolation counterparts.
DEFAULT_MODULES = ("add_or_sub", "add_sub_multiple", "div", "mixed", "mul", "mul_div_multiple")
EXTRAPOLATE_OF = {
    "add_or_sub": "add_or_sub_big",
    "add_sub_multiple": "add_sub_multiple_longer",
    "div": "div_big",
    "mixed": "mixed_longer",
    "mul": "mul_big",
    "mul_div_multiple": "mul_div_multiple_longer",
}
HEADLINE = "mul_div_multiple_longer"  # the paper's extrapolation result (§3.5)


@dataclass(frozen=True)
class GridSpec:
    """Everything that determines the grid's models except the seed (which is per run)."""

    # standard Transformer (Llama-style pre-norm block)
    d_model: int = 64
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 256
    # MoEUT (matched to the Transformer's parameter count by its number of feed-forward experts)
    group_size: int = 2
    moeut_heads: int = 2
    moeut_att_experts: int = 4
    moeut_att_k: int = 2
    moeut_expert_size: int = 64
    moeut_ff_k: int = 2
    # optimisation
    steps: int = 300
    batch_size: int = 16
    window: int = 128
    lr: float = 3e-3
    warmup: int = 40
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    threads: int | None = None  # torch threads of the grid's training on a CPU; None: torch's own count (OMP_NUM_THREADS, else one per core)
    checkpoint_every: int = 100
    # data: entropy = None uses the released generator's settings (train (3, 10), add/sub (4, 16));
    # a (lo, hi) pair scales them down (see `problems`)
    modules: tuple = DEFAULT_MODULES
    entropy: tuple | None = (1.0, 4.0)
    add_sub_entropy: tuple | None = (2.0, 6.0)
    data_seed: int = 0
    n_eval: int = 50  # evaluation problems per module and split
    eval_seed: int = 1234
    # fine-tuning analogue (App. D.5)
    pretrain_steps: int = 300
    finetune_steps: int = 150
    finetune_lr: float = 1e-3

    def key(self) -> str:
        """Hash of the fields that determine the models (not `threads` or `checkpoint_every`)."""
        from .store import digest

        d = asdict(self)
        d.pop("threads"), d.pop("checkpoint_every")
        return digest(d)[:12]

    def at_scale(self, scale: float) -> "GridSpec":
        """A bigger grid for a GPU: training steps × scale, width × √scale (rounded to 32), same depth."""
        if scale == 1:
            return self
        w = lambda x: max(32, int(round(x * math.sqrt(scale) / 32)) * 32)  # noqa: E731
        return replace(
            self,
            d_model=w(self.d_model),
            d_ff=w(self.d_ff),
            moeut_expert_size=w(self.moeut_expert_size),
            steps=int(self.steps * scale),
            warmup=int(self.warmup * min(scale, 10)),
            pretrain_steps=int(self.pretrain_steps * scale),
            finetune_steps=int(self.finetune_steps * scale),
            checkpoint_every=max(self.checkpoint_every, int(self.steps * scale) // 10),
        )

    def extrapolate_modules(self) -> tuple:
        return tuple(EXTRAPOLATE_OF[m] for m in self.modules if m in EXTRAPOLATE_OF)


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def transformer_config(spec: GridSpec):
    from .zoo import llama_config

    return llama_config(spec.n_layers, spec.d_model, spec.n_heads, spec.d_ff)


def transformer_params(spec: GridSpec) -> int:
    d, L, ff, V = spec.d_model, spec.n_layers, spec.d_ff, transformer_config(spec).vocab_size
    return 2 * V * d + L * (4 * d * d + 3 * d * ff + 2 * d) + d


def moeut_config(spec: GridSpec):
    from effdepth.access import moeut
    from .zoo.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE

    return moeut.matched_config(
        transformer_params(spec),
        vocab_size=VOCAB_SIZE,
        hidden_size=spec.d_model,
        num_hidden_layers=spec.n_layers,
        group_size=spec.group_size,
        num_attention_heads=spec.moeut_heads,
        head_dim=spec.d_model // spec.moeut_heads,
        att_n_experts=spec.moeut_att_experts,
        att_k=spec.moeut_att_k,
        ff_expert_size=spec.moeut_expert_size,
        ff_k=spec.moeut_ff_k,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def build_model(arch: str, spec: GridSpec, seed: int):
    """A freshly initialised model of ``arch`` (seeded), float32."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got '{arch}'.")
    torch.manual_seed(seed)
    if arch == "transformer":
        from transformers import LlamaForCausalLM

        return LlamaForCausalLM(transformer_config(spec)).float()
    from effdepth.access.moeut import MoEUTForCausalLM

    return MoEUTForCausalLM(moeut_config(spec)).float()


def count_params(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def grid_dir(spec: GridSpec | None = None) -> Path:
    from .zoo import cache_dir

    base = cache_dir() / "grid"
    return base if spec is None else base / spec.key()


GENERATOR_ENTROPY = (3.0, 10.0)  # mathematics_dataset: arithmetic _ENTROPY_TRAIN
GENERATOR_ADD_SUB_ENTROPY = (4.0, 16.0)  # _ADD_SUB_ENTROPY_TRAIN


def _tables(entropy: tuple, add_sub_entropy: tuple) -> dict:
    """The generator's arithmetic module tables for scaled entropy ranges, built exactly as
    ``mathematics_dataset.modules.arithmetic`` builds its own from (3, 10) and (4, 16):
    interpolation at the same relative point of the training range (8 of 3–10, 12 of 4–16),
    extrapolation above it ((10, 12) and (16, 20)) with expressions 1–3 terms longer than the
    longest training expression."""
    import functools

    ar = A.import_mathematics_dataset()
    from mathematics_dataset.sample import arithmetic as sample_arithmetic
    from mathematics_dataset.util import composition

    lo, hi = entropy
    alo, ahi = add_sub_entropy
    g_lo, g_hi = GENERATOR_ENTROPY
    ga_lo, ga_hi = GENERATOR_ADD_SUB_ENTROPY
    interp = lo + (hi - lo) * (8 - g_lo) / (g_hi - g_lo)
    a_interp = alo + (ahi - alo) * (12 - ga_lo) / (ga_hi - ga_lo)
    extra = composition.PreSampleArgs(1, 1, hi, hi + (hi - lo) * 2 / 7)
    a_extra = composition.PreSampleArgs(1, 1, ahi, ahi + (ahi - alo) * 4 / 12)
    train_length = sample_arithmetic.length_range_for_entropy(hi)[1]

    def longer():
        return random.randint(train_length + 1, train_length + 3)

    return {
        "train": ar._make_modules(entropy=(lo, hi), add_sub_entropy=(alo, ahi)),
        "interpolate": ar._make_modules(entropy=(interp, interp), add_sub_entropy=(a_interp, a_interp)),
        "extrapolate": {
            "add_or_sub_big": functools.partial(ar.add_or_sub, None, a_extra),
            "mul_big": functools.partial(ar.mul, None, extra),
            "div_big": functools.partial(ar.div, None, extra),
            "add_sub_multiple_longer": lambda: ar.add_sub_multiple(ar._INT, extra, length=longer()),
            "mul_div_multiple_longer": lambda: ar.mul_div_multiple(ar._INT, extra, length=longer()),
            "mixed_longer": lambda: ar.mixed(ar._INT, extra, length=longer()),
        },
    }


def problems(module: str, split: str, n: int, seed: int, max_chars: int, entropy=None, add_sub_entropy=None) -> list[tuple[str, str]]:
    """``n`` (question, answer) pairs of ``arithmetic__<module>`` from ``split`` ('train',
    'interpolate', 'extrapolate'), seeded. ``entropy=None``: the released generator's settings
    (`effdepth.data.arithmetic.dm_problems`); otherwise the same module functions with the entropy
    ranges scaled to ``entropy`` / ``add_sub_entropy`` (see `_tables`). The generator's length caps
    (question ≤ 160, answer ≤ 30 characters) and ``max_chars`` on the training text apply."""
    if entropy is None:
        return A.dm_problems(module, split, n, seed, max_chars)
    import hashlib

    import numpy as _np

    table = _tables(tuple(entropy), tuple(add_sub_entropy or entropy))[split]
    if module not in table:
        raise ValueError(f"No module '{module}' in split '{split}'. It has: {', '.join(sorted(table))}.")
    fn = table[module]
    state = random.getstate(), _np.random.get_state()
    s = int(hashlib.sha256(repr(("grid", module, split, seed, tuple(entropy))).encode()).hexdigest()[:15], 16)
    random.seed(s)
    _np.random.seed(s % (2**32))
    out: list[tuple[str, str]] = []
    try:
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise RuntimeError(f"arithmetic__{module}: too few problems fit max_chars={max_chars}.")
            p = fn()
            q, a = str(p.question), str(p.answer)
            if len(q) > A.DM_MAX_QUESTION_LENGTH or len(a) > A.DM_MAX_ANSWER_LENGTH or len(A.format_text(q, a)) > max_chars:
                continue
            out.append((q, a))
    finally:
        random.setstate(state[0])
        _np.random.set_state(state[1])
    return out


def _module_problems(args) -> list[tuple[str, str]]:
    return problems(*args)


def _generate(jobs: list[tuple], workers: int) -> list[list[tuple[str, str]]]:
    if workers <= 1 or len(jobs) <= 1:
        return [_module_problems(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_module_problems, jobs))


def _cached_json(path: Path, make):
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
    return value


def n_pool(spec: GridSpec, steps: int | None = None) -> int:
    """Training problems needed for ``steps`` steps (estimated from the modules' mean text length)."""
    steps = spec.steps if steps is None else steps
    return int(steps * spec.batch_size * spec.window / 40 * 1.1) + 100


def training_pool(spec: GridSpec, n: int | None = None, progress: bool = True) -> list[tuple[str, str]]:
    """The (question, answer) training problems, drawn evenly from ``spec.modules`` (``train`` split,
    texts that fit a window), seeded by ``spec.data_seed``; generated once and cached."""
    n = n_pool(spec) if n is None else n
    per = -(-n // len(spec.modules))
    tag = f"{'-'.join(spec.modules)}|{spec.window}|{spec.data_seed}|{per}|{spec.entropy}|{spec.add_sub_entropy}"
    from .store import digest

    path = grid_dir() / "_data" / f"train-{digest(tag)[:12]}.json"

    def make():
        t0 = time.perf_counter()
        jobs = [(m, "train", per, spec.data_seed, spec.window - 2, spec.entropy, spec.add_sub_entropy) for m in spec.modules]
        pools = _generate(jobs, min(len(jobs), os.cpu_count() or 1))
        pairs = [p for pool in pools for p in pool]
        random.Random(spec.data_seed).shuffle(pairs)
        if progress:
            print(f"generated {len(pairs)} training problems in {time.perf_counter() - t0:.0f} s")
        return pairs

    return [tuple(p) for p in _cached_json(path, make)]


def eval_sets(spec: GridSpec) -> dict[str, list[Example]]:
    """{'interpolate': [...], 'extrapolate': [...]}: ``n_eval`` problems per module (seed ``eval_seed``)."""
    from .store import digest

    tag = f"{spec.modules}|{spec.window}|{spec.eval_seed}|{spec.n_eval}|{spec.entropy}|{spec.add_sub_entropy}"
    path = grid_dir() / "_data" / f"eval-{digest(tag)[:12]}.json"

    def make():
        jobs = [(m, "interpolate", spec.n_eval, spec.eval_seed, spec.window - 2, spec.entropy, spec.add_sub_entropy) for m in spec.modules]
        jobs += [(m, "extrapolate", spec.n_eval, spec.eval_seed, spec.window - 2, spec.entropy, spec.add_sub_entropy) for m in spec.extrapolate_modules()]
        pools = _generate(jobs, min(len(jobs), os.cpu_count() or 1))
        return [[j[0], j[1], pool] for j, pool in zip(jobs, pools)]

    out = {s: [] for s in SPLITS}
    for module, split, pool in _cached_json(path, make):
        for i, (q, a) in enumerate(pool):
            out[split].append(
                Example(*A.format_example(q, a), level=None, meta={"dataset": "mathematics_dataset", "module": module, "split": split, "index": i})
            )
    return out


def arithmetic_batches(pairs: Sequence[tuple[str, str]], spec: GridSpec, steps: int, seed: int) -> dict:
    """``steps`` stacked batches of packed windows; the order of the problems is shuffled with ``seed``
    (the pool is reshuffled when a run needs more windows than one pass gives)."""
    from .zoo import train as T

    need = steps * spec.batch_size
    windows: list = []
    epoch = 0
    while len(windows) < need:
        order = list(pairs)
        random.Random(f"{seed}-{epoch}").shuffle(order)
        enc = (T.encode_pair(*A.format_example(q, a)) for q, a in order)
        windows += list(T.pack(enc, spec.window, too_long="skip", lookahead=16))
        epoch += 1
    return T.stack_batches(list(T.batches(iter(windows[:need]), spec.batch_size)))


def multihop_batches(spec: GridSpec, steps: int, seed: int) -> dict:
    """Packed windows of multi-hop questions only (the pre-training distribution of App. D.5)."""
    from .data import multihop as M
    from .zoo import train as T

    rng = random.Random(f"multihop-pretrain-{seed}")

    def stream():
        while True:
            p, a, _ = M.make_question(rng, rng.randint(1, 4))
            yield T.encode_pair(p, a)

    it = T.batches(T.pack(stream(), spec.window, too_long="skip", lookahead=16), spec.batch_size)
    return T.stack_batches([next(it) for _ in range(steps)])


class DeviceBatches(Sequence):
    """Stacked batches handed to the training loop one step at a time, moved to ``device``."""

    def __init__(self, stacked: dict, device: str = "cpu"):
        self.stacked, self.device = stacked, device

    def __len__(self):
        return int(self.stacked["input_ids"].shape[0])

    def __getitem__(self, i):
        return {k: v[i].to(self.device) for k, v in self.stacked.items()}


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


def accuracy(model, sets: dict[str, list[Example]]) -> dict:
    """{split: {module: accuracy, 'all': accuracy}} and the per-example results."""
    acc, correct = {}, {}
    for split, exs in sets.items():
        ok = exact_match(model, exs)
        correct[split] = ok
        by: dict[str, list[bool]] = {}
        for ex, k in zip(exs, ok):
            by.setdefault(ex.meta["module"], []).append(k)
        acc[split] = {m: float(np.mean(v)) for m, v in by.items()}
        acc[split]["all"] = float(np.mean(ok)) if ok else float("nan")
    return {"accuracy": acc, "correct": correct}


# ------------------------------------------------------------------------------------------------
# Training one model
# ------------------------------------------------------------------------------------------------


def run_name(arch: str, objective: str, seed: int) -> str:
    return f"{arch}-{objective}-s{seed}"


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
    from .zoo import train as T

    final = grid_dir(spec) / name
    if is_complete(final):
        return final
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    cfg = T.TrainConfig(
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
    res = T.train(model, DeviceBatches(data, device), cfg, checkpoint_dir=partial, progress=f"{name}" if progress else False)
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


def train_cell(arch: str, objective: str, seed: int, spec: GridSpec, device: str = "cpu", progress: bool = True, pool=None, sets=None) -> Path:
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


# ------------------------------------------------------------------------------------------------
# The grid
# ------------------------------------------------------------------------------------------------


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
        for (arch, obj, seed) in sorted(self.folders):
            rep = self.report(arch, obj, seed)
            for split, accs in rep["accuracy"].items():
                for module, acc in accs.items():
                    rows.append({"arch": arch, "objective": obj, "seed": seed, "split": split, "module": module, "accuracy": acc})
        return pd.DataFrame(rows)

    def summary(self, modules: Sequence[str] = ("all",)) -> pd.DataFrame:
        """Mean, sample standard deviation, min and max over seeds of the accuracy, per
        (arch, objective, split, module) for ``modules`` ('all' = every module of the split)."""
        f = self.accuracy_frame()
        f = f[f.module.isin(modules)]
        g = f.groupby(["split", "module", "arch", "objective"], sort=False)["accuracy"]
        out = g.agg(mean="mean", sd=lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan"), lo="min", hi="max", n="count")
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


def _cell_folders(spec: GridSpec, seeds, archs=ARCHS, objectives=OBJECTIVES) -> dict:
    return {(a, o, s): grid_dir(spec) / run_name(a, o, s) for s in seeds for a in archs for o in objectives}


def pretrain(spec: GridSpec, seed: int, device: str = "cpu", progress: bool = True) -> Path:
    """A Transformer of the grid's size trained on multi-hop questions only (all-token loss): the
    'pre-trained model' of the fine-tuning analogue."""
    name = f"pretrained-multihop-s{seed}"
    final = grid_dir(spec) / name
    if not is_complete(final):
        model = build_model("transformer", spec, seed)
        data = multihop_batches(spec, spec.pretrain_steps, seed)
        extra = {"arch": "transformer", "objective": "all", "seed": seed, "data": "multihop"}
        train_run(name, model, data, spec, spec.pretrain_steps, "all", spec.lr, device, progress, extra, eval_sets(spec))
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
        train_run(name, model, data, spec, spec.finetune_steps, objective, spec.finetune_lr, device, progress, extra, eval_sets(spec))
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
    import multiprocessing as mp

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
    folders = _cell_folders(spec, seeds, archs, objectives)
    first = [("cell", *k) for k, f in folders.items() if not is_complete(f)]
    second = []
    if finetune_seed is not None:
        if not is_complete(grid_dir(spec) / f"pretrained-multihop-s{finetune_seed}"):
            first.insert(0, ("pretrain", finetune_seed))
        second = [("finetune", o, finetune_seed) for o in OBJECTIVES if not is_complete(grid_dir(spec) / f"finetuned-{o}-s{finetune_seed}")]
    _run_jobs([first, second], spec, device, progress, default_workers(device) if workers is None else workers)
    return Grid(spec, folders)


def finetune_runs(spec: GridSpec | None = None, seed: int = 0, device: str = "cpu", progress: bool = True, workers: int | None = None) -> dict[str, Path]:
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


# ------------------------------------------------------------------------------------------------
# Depth use
# ------------------------------------------------------------------------------------------------

MULTI_STEP = ("add_sub_multiple", "mul_div_multiple", "mixed", "add_sub_multiple_longer", "mul_div_multiple_longer", "mixed_longer")


def correct_examples(grid: Grid, seed: int, split: str = "interpolate", keys=None) -> list[int]:
    """Indices (into ``eval_sets(spec)[split]``) of the examples every model ``keys`` (default: the
    four cells of ``seed``) answers correctly."""
    keys = keys or [(a, o, seed) for a in ARCHS for o in OBJECTIVES]
    ok = None
    for k in keys:
        c = np.asarray(grid.report(*k)["correct"][split], bool)
        ok = c if ok is None else ok & c
    return [int(i) for i in np.flatnonzero(ok)]


def choose_example(sets: dict, correct_by_split: dict[str, list[int]], prefer=MULTI_STEP) -> tuple[Example, Example] | None:
    """An (example, counterfactual) pair: the example is answered correctly by every model considered
    (from a multi-step module if possible, extrapolation first, then the longest question); the
    counterfactual is another problem of the same module with a different answer."""
    cands = []
    for split in ("extrapolate", "interpolate"):
        for i in correct_by_split.get(split, []):
            ex = sets[split][i]
            cands.append((ex.meta["module"] in prefer, split == "extrapolate", len(ex.prompt), split, i))
    if not cands:
        return None
    *_, split, i = max(cands)
    ex = sets[split][i]
    for other in sets[split]:
        if other.meta["module"] == ex.meta["module"] and other.answer != ex.answer and other.prompt != ex.prompt:
            return ex, other
    return ex, next(o for o in sets[split] if o.prompt != ex.prompt)


def erasure(model, example: Example, counterfactual: Example, batch_size: int | None = 256):
    """Residual erasure (SPEC §4a) of ``example`` with the erasing vector of §3.5: the mean over the
    positions of one counterfactual arithmetic example, per residual index."""
    from effdepth.measures.residual_erasure import mean_residuals, residual_erasure

    vectors = mean_residuals(model, [counterfactual.text])
    return residual_erasure(model, example.prompt, example.answer, vectors=vectors, batch_size=batch_size)


def erasure_depth(result, rel: float = 0.5) -> float:
    """How deep the question's information is still used, as a fraction of the depth (0 … 1).

    For each question token t (1 … answer start − 2: position 0 is never erased and the last prompt
    position predicts the answer itself, so erasing it changes the answer at any depth) with column
    maximum w_t = max_b effect[b, t], last_t is the highest residual index b with
    effect[b, t] ≥ rel · w_t: erasing the token there still changes the answer by at least half as
    much as erasing it anywhere. The score is Σ_t w_t · last_t / (L · Σ_t w_t): tokens that matter
    weigh more. NaN when no question token changes the answer."""
    eff = np.nan_to_num(np.asarray(result.effect, float))
    L = eff.shape[0] - 1
    a0 = int(result.arrays["answer_start"])
    cols = eff[:, 1 : a0 - 1]
    w = cols.max(0)
    if cols.size == 0 or w.sum() <= 0:
        return float("nan")
    above = cols >= rel * w[None]
    last = np.array([np.flatnonzero(above[:, j]).max() for j in range(cols.shape[1])])
    return float((w * last).sum() / (L * w.sum()))


def depth_examples(spec: GridSpec, n_examples: int) -> list[Example]:
    """The depth score's problems: ``n_examples`` interpolation problems taken evenly from the multi-step modules."""
    sets = eval_sets(spec)
    return spread([e for e in sets["interpolate"] if e.meta["module"] in MULTI_STEP] or sets["interpolate"], n_examples)


def measure_depth(model, exs: list[Example], sets: dict, usable: dict, n_erasure: int) -> dict:
    """One model's depth use: depth score (layer, logit effect) over ``exs`` as a fraction of the
    depth (D / (L − 1)), and the erasure depth averaged over the first ``n_erasure`` problems with
    ``usable[split][i]`` true (interpolation first), each erased with a counterfactual of its module."""
    from effdepth.measures.depth_score import depth_score

    L = model.n_layers
    ds = depth_score(model, {"interpolate": exs}, split="answer", n_boot=200)
    depths = []
    for split in ("interpolate", "extrapolate"):
        for i in np.flatnonzero(usable[split]):
            if len(depths) >= n_erasure:
                break
            ex = sets[split][i]
            cf = next((o for o in sets[split] if o.meta["module"] == ex.meta["module"] and o.answer != ex.answer), None)
            if cf is not None:
                depths.append(erasure_depth(erasure(model, ex, cf)))
    return {
        "depth_layer": float(ds.depth_layer[0]) / max(L - 1, 1),
        "depth_output": float(ds.depth_output[0]) / max(L - 1, 1),
        "erasure_depth": float(np.nanmean(depths)) if depths else float("nan"),
        "n_erasure": len(depths),
    }


def depth_use(grid: Grid, n_examples: int = 16, n_erasure: int = 4, device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Depth use of every grid model (`measure_depth`): the depth score (SPEC §4c, skip test with the
    split point at the answer start, max-aggregated over ``n_examples`` interpolation problems taken
    evenly from the multi-step modules) and the erasure depth (:func:`erasure_depth`) averaged over up
    to ``n_erasure`` problems the model answers correctly. One row per (arch, objective, seed)."""
    from tqdm.auto import tqdm

    sets = eval_sets(grid.spec)
    exs = depth_examples(grid.spec, n_examples)
    rows = []
    for key in tqdm(sorted(grid.folders), desc="depth use", disable=not progress):
        ok = grid.report(*key)["correct"]
        rows.append({"arch": key[0], "objective": key[1], "seed": key[2], **measure_depth(grid.load(*key, device=device), exs, sets, ok, n_erasure)})
    return pd.DataFrame(rows)


def control_models(grid: Grid, device: str = "cpu") -> dict:
    """{(arch, seed): the random-init control} (`effdepth.controls.control_of` with the grid seed):
    both objectives of a seed start from this same untrained model, so there is one per (arch, seed)."""
    from effdepth.access.controls import control_of

    out = {}
    for arch, obj, seed in sorted(grid.folders):
        if (arch, seed) not in out:
            out[(arch, seed)] = control_of(grid.load(arch, obj, seed, device=device), seed=seed)
    return out


def control_depth_use(grid: Grid, n_examples: int = 16, n_erasure: int = 4, device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Depth use of the random-init controls, one row per (arch, seed): the depth score on the same
    problems as `depth_use`; the erasure depth on the first ``n_erasure`` problems that have a
    counterfactual (an untrained model answers none correctly, so correctness cannot select them)."""
    from tqdm.auto import tqdm

    sets = eval_sets(grid.spec)
    exs = depth_examples(grid.spec, n_examples)
    every = {s: np.ones(len(sets[s]), bool) for s in SPLITS}
    rows = []
    for (arch, seed), model in tqdm(control_models(grid, device).items(), desc="control depth use", disable=not progress):
        rows.append({"arch": arch, "seed": seed, **measure_depth(model, exs, sets, every, n_erasure)})
    return pd.DataFrame(rows)


def control_accuracy(grid: Grid, device: str = "cpu") -> pd.DataFrame:
    """Exact-match accuracy of the random-init controls, one row per (arch, seed, split, module)."""
    sets = eval_sets(grid.spec)
    rows = []
    for (arch, seed), model in control_models(grid, device).items():
        for split, accs in accuracy(model.hf, sets)["accuracy"].items():
            rows += [{"arch": arch, "seed": seed, "split": split, "module": m, "accuracy": a} for m, a in accs.items()]
    return pd.DataFrame(rows)


def spread(examples: list[Example], n: int) -> list[Example]:
    """Up to n examples, taken round-robin over their modules (so every module is represented)."""
    by: dict[str, list[Example]] = {}
    for e in examples:
        by.setdefault(e.meta["module"], []).append(e)
    out, k = [], 0
    while len(out) < n and any(k < len(v) for v in by.values()):
        out += [v[k] for v in by.values() if k < len(v)]
        k += 1
    return out[:n]


def load_folder(folder: Path, label: str, device: str = "cpu", dtype="float32"):
    """A grid/fine-tuning folder as an effdepth `Model` labelled ``label``."""
    from effdepth.access import moeut  # noqa: F401
    from effdepth.access.load import load_model

    model = load_model(str(folder), device=device, dtype=dtype)
    model.spec = label
    return model


# ------------------------------------------------------------------------------------------------
# Presets and baselines (the chapter's verdicts: effdepth.chapters.objective)
# ------------------------------------------------------------------------------------------------

PRESETS = {
    # the book's CPU default: the whole grid (3 seeds) and the fine-tuning runs in a few minutes
    "default": GridSpec(),
    # for tests of the machinery: seconds
    "tiny": GridSpec(
        d_model=32,
        n_layers=2,
        n_heads=2,
        d_ff=64,
        moeut_att_experts=2,
        moeut_att_k=1,
        moeut_expert_size=16,
        moeut_ff_k=1,
        steps=4,
        batch_size=2,
        window=96,
        warmup=1,
        modules=("add_sub_multiple", "mul_div_multiple"),
        n_eval=4,
        pretrain_steps=3,
        finetune_steps=2,
    ),
}


def make_spec(preset: str = "default", scale: float = 1, difficulty: str = "small") -> GridSpec:
    """The grid of a notebook run: a preset, scaled (`GridSpec.at_scale`), with the small (scaled
    entropy) or the released generator's difficulty."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got '{preset}'.")
    if difficulty not in ("small", "generator"):
        raise ValueError(f"difficulty must be 'small' or 'generator', got '{difficulty}'.")
    spec = PRESETS[preset]
    if difficulty == "generator":
        spec = replace(spec, entropy=None, add_sub_entropy=None)
    return spec.at_scale(scale)


def baseline_accuracy(spec: GridSpec) -> dict:
    """Accuracy of always answering the most frequent training answer, {split: {module: acc, 'all': acc}}
    (what a model that learned only the answer distribution gets)."""
    from collections import Counter

    top = Counter(a for _, a in training_pool(spec, progress=False)).most_common(1)[0][0]
    out = {}
    for split, exs in eval_sets(spec).items():
        by: dict[str, list[bool]] = {}
        for e in exs:
            by.setdefault(e.meta["module"], []).append(e.answer.strip() == top)
        out[split] = {m: float(np.mean(v)) for m, v in by.items()}
        out[split]["all"] = float(np.mean([e.answer.strip() == top for e in exs]))
    out["answer"] = top
    return out
