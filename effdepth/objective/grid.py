"""§3.5's grid: the cells (architecture × objective), what determines its models (:class:`GridSpec`),
the notebook's presets (:func:`make_spec`) and where the models are cached (:func:`grid_dir`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from effdepth.store import digest
from effdepth.zoo.cache import cache_dir

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
MULTI_STEP = (
    "add_sub_multiple",
    "mul_div_multiple",
    "mixed",
    "add_sub_multiple_longer",
    "mul_div_multiple_longer",
    "mixed_longer",
)


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
    threads: int | None = (
        None  # torch threads of the grid's training on a CPU; None: torch's own count (OMP_NUM_THREADS, else one per core)
    )
    checkpoint_every: int = 100
    # data: entropy = None uses the released generator's settings (train (3, 10), add/sub (4, 16));
    # a (lo, hi) pair scales them down (see effdepth.data.arithmetic.scaled_module_table)
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
        d = asdict(self)
        d.pop("threads"), d.pop("checkpoint_every")
        return digest(d)[:12]

    def at_scale(self, scale: float) -> GridSpec:
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


def grid_dir(spec: GridSpec | None = None) -> Path:
    """``<cache>/grid`` (``spec`` None), or the folder of one grid's models: ``<cache>/grid/<spec key>``."""
    base = cache_dir() / "grid"
    return base if spec is None else base / spec.key()


def run_name(arch: str, objective: str, seed: int) -> str:
    return f"{arch}-{objective}-s{seed}"


def cell_folders(spec: GridSpec, seeds, archs=ARCHS, objectives=OBJECTIVES) -> dict:
    """{(arch, objective, seed): the cell's model folder} (trained or not)."""
    return {(a, o, s): grid_dir(spec) / run_name(a, o, s) for s in seeds for a in archs for o in objectives}
