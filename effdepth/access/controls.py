"""The random-init control of a loaded model: same architecture, no training.

A verdict "as in the paper" must be something training produced. In a pre-norm transformer the
residual stream already grows with depth at initialisation, so a pattern such as "second-half layers
write less" can appear without any learning. Every chapter therefore measures, with the same prompts,
the *control*: a model with the same config (hence the same architecture, width, depth, norms and
tied/untied embeddings), randomly initialised by transformers' own initialiser under
`torch.manual_seed(seed)`, with the same tokenizer, dtype and device.

Controls are built directly on the model's device in its dtype and cached per process (a chapter asks
for each several times); on a GPU only the most recently used stays resident. Each carries its own
`spec` ("<spec> · random init (seed s)") and a revision that hashes what identifies it (config, seed,
dtype, device type, library versions: `control_revision`), so its measurements are cached under their
own key without copying its weights back to hash them. A control whose weights are the model's own
(the model is that random init) is refused (`SameAsModel`) and `controls_of` takes the next seed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Sequence

import torch

from effdepth.access.model import Model
from effdepth.errors import SameAsModel

_CACHE: dict[tuple, Model] = {}
RESIDENT_ON_ACCELERATOR = 1
"""How many controls may stay built on a GPU (or any non-CPU device) at once: building another releases
the least recently used (an 8B control is 16 GB in bf16; three of them and the model did not fit an
80 GB card). On the CPU every control built stays cached for the process (cheap at the book's sizes)."""


def _name(lm: Model) -> str:
    spec = lm.spec.rstrip("/")
    return os.path.basename(spec) if os.path.isdir(os.path.expanduser(spec)) else spec


def control_revision(config, seed: int, dtype, device) -> str:
    """What identifies a control's weights, hashed: its config, seed, dtype and device type (the CPU and
    CUDA generators give different numbers for one seed), and the torch and transformers versions (the
    initialiser). Used as the control's revision (cache key) instead of hashing its weights, which would
    copy every one of them back to the CPU."""

    import transformers

    what = json.dumps(
        {
            "config": json.loads(config.to_json_string(use_diff=False)),
            "seed": int(seed),
            "dtype": str(dtype),
            "device": torch.device(device).type,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        sort_keys=True,
        default=str,
    )
    return "init-" + hashlib.sha256(what.encode()).hexdigest()[:16]


def init_weights(config, seed: int, dtype, device) -> torch.nn.Module:
    """transformers' initialiser for `config` under `torch.manual_seed(seed)`, every tensor created on
    `device` in `dtype` (no CPU copy to move); the caller's RNG state (CPU and that GPU) is untouched."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device)
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork, device_type="cuda"):
        torch.manual_seed(int(seed))
        with torch.device(device):
            hf = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
    return hf.eval()


def _build(lm: Model, seed: int, dtype, device, config=None) -> Model:
    """The random-init model, built directly on `device` in `dtype` (no CPU copy, no weight hashing);
    `config`: a narrowed config (`narrow_config`) instead of the model's own."""
    from nnsight import TransformersModel

    config = config if config is not None else lm.hf.config
    hf = init_weights(config, seed, dtype, device)
    nn = TransformersModel(hf, task="text-generation", tokenizer=lm.tokenizer)
    full, width = _width(lm.hf.config), _width(config)
    narrow = f", width {width} of {full}" if width != full else ""
    return Model(
        spec=f"{_name(lm)} · random init (seed {int(seed)}{narrow})",
        nn=nn,
        tokenizer=nn.tokenizer,
        adapter=lm.adapter,
        revision=control_revision(config, seed, dtype, device),
    )


@torch.no_grad()
def same_weights(a: Model, b: Model) -> bool:
    """Do two local models hold exactly the same parameters (names, shapes, values)? Compares on the
    models' own device, the embedding first (almost always enough to tell)."""
    pa, pb = dict(a.hf.named_parameters()), dict(b.hf.named_parameters())
    if pa.keys() != pb.keys():
        return False
    emb = a.adapter.embed + ".weight"
    names = ([emb] if emb in pa else []) + [n for n in pa if n != emb]
    for n in names:
        x, y = pa[n], pb[n]
        if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x, y.to(x.device)):
            return False
    return True


def release(device=None) -> int:
    """Drop the cached controls (on `device`, or all): a chapter that is done with its controls frees
    their memory; returns how many were dropped."""
    keys = [k for k in _CACHE if device is None or k[4] == str(torch.device(device))]
    for k in keys:
        del _CACHE[k]
    if keys and torch.cuda.is_available():
        torch.cuda.empty_cache()
    return len(keys)


def control_of(lm: Model, seed: int = 0, width: int | None = None) -> Model:
    """The random-init control of `lm` for `seed` (same config, tokenizer, dtype, device).

    width: build the control at this hidden size (`narrow_config`: same depth, block kinds, head
    size, vocabulary and ratios, fewer heads and a narrower MLP) instead of the model's own. For a
    remote model the default is `remote_control_width` (the model's own width when its float32
    weights fit `control_budget()`, else the widest power-of-two fraction that does).

    Built directly on the model's device in its dtype (`torch.manual_seed(seed)`, transformers'
    initialiser), identified by `control_revision` (config + seed + dtype + device type), and, on a
    GPU, kept resident only while it is the most recently used (`RESIDENT_ON_ACCELERATOR`).
    Raises `SameAsModel` when the control's weights are exactly `lm`'s own (`lm` is that random init,
    e.g. `random:<spec>` and seed 0): a page must not compare a model with itself (`controls_of` then
    takes the next seed).

    For a remote model (NDIF holds only its trained weights) the control is built and run here, on
    the CPU in float32, after checking that its weights fit in this machine's free memory."""
    dtype, device = lm.dtype, lm.device
    config = lm.hf.config
    if lm.remote and width is None:
        width = remote_control_width(config)
    if width is not None and int(width) != _width(config):
        config = narrow_config(config, int(width))
    if lm.remote:
        dtype, device = torch.float32, torch.device("cpu")
        need = n_params(config) * 4
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if need > free:
            raise ValueError(
                f"The random-init control of '{lm.spec}' runs here, not on NDIF (NDIF serves trained weights "
                f"only), and needs {need / 1e9:.1f} GB of float32 weights; this machine has {free / 1e9:.1f} GB free."
            )
    key = (lm.spec, lm.revision, int(seed), str(dtype), str(device), _width(config))
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # most recently used last
    else:
        if torch.device(device).type != "cpu":
            on_device = [k for k in _CACHE if k[4] == str(device)]
            for k in on_device[: max(0, len(on_device) - RESIDENT_ON_ACCELERATOR + 1)]:
                del _CACHE[k]  # released before the next one is built
            if on_device and torch.cuda.is_available():
                torch.cuda.empty_cache()
        control = _build(lm, seed, dtype, device, config)
        if control.revision == lm.revision or (
            not lm.remote and torch.device(device).type != "meta" and same_weights(lm, control)
        ):
            raise SameAsModel(
                f"The random-init control of '{lm.spec}' with seed {int(seed)} has exactly the model's own weights "
                f"(the model is that random init): it is not a control of it."
            )
        _CACHE[key] = control
    return _CACHE[key]


class Controls(Sequence):
    """The controls of a model for a list of seeds, built when first used (`control_of`), so that on a GPU
    only the one in use is resident. `seeds` are the seeds actually used: a seed whose control would be
    the model itself (`SameAsModel`) is replaced by the next unused one, named in `replaced`
    ({asked: used}) and in `note` (a sentence for the page; '' when none was)."""

    def __init__(self, lm: Model, seeds):
        self.lm = lm
        self.asked = [int(s) for s in seeds]
        self.seeds, self.replaced, self.note = list(self.asked), {}, ""
        dtype, device = (torch.float32, torch.device("cpu")) if lm.remote else (lm.dtype, lm.device)
        for i, s in enumerate(self.asked):  # cheap: a `random:` model carries its init's revision
            if control_revision(lm.hf.config, s, dtype, device) == lm.revision:
                self._replace(i)

    def _replace(self, i: int) -> None:
        asked = self.asked[i]
        used = self.seeds[i] + 1
        while used in self.seeds or used in self.asked:
            used += 1
        self.seeds[i] = used
        self.replaced[asked] = used
        self.note = (
            f"{self.lm.spec} is itself the random init of seed {', '.join(map(str, self.replaced))}, so its control"
            f"{'s use' if len(self.replaced) > 1 else ' uses'} seed {', '.join(map(str, self.replaced.values()))} instead "
            f"(a model is never compared with itself)."
        )
        warnings.warn(self.note, stacklevel=3)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        try:
            return control_of(self.lm, self.seeds[i])
        except SameAsModel:  # weights equal to the model's (e.g. a saved random init): the next seed
            self._replace(i if i >= 0 else len(self) + i)
            return self[i]

    def __repr__(self) -> str:
        return f"Controls({self.lm.spec!r}, seeds={self.seeds})"


def controls_of(lm: Model, seeds=(0,)) -> Controls:
    """One control per seed, in order, built when used (a `Controls` sequence: index it, iterate it,
    `len` it); a seed whose control would be the model itself is replaced by the next one (`Controls.note`)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("controls_of needs at least one seed (e.g. seeds=(0, 1, 2)).")
    return Controls(lm, seeds)


# -- the control of a remote model: same depth and blocks, a width that fits here -----------------
#
# NDIF serves trained weights only, so a remote model's control is built and run on this machine, in
# float32 on the CPU. A 70B control would need 282 GB. The control keeps what the depth-use patterns
# are about (the number of blocks, each block's kind and norms, the residual form, the vocabulary and
# tokenizer, the initialiser) and narrows the width: hidden size, heads (head size kept) and MLP width
# divided by the same power of two. Validated on SmolLM2-135M and tiny models (book/methods.md): the
# chapters' control statistics of the narrow control agree with the full-width control's.

CONTROL_GB_ENV = "EFFDEPTH_CONTROL_GB"
CONTROL_GB = 2.0
_HIDDEN = ("hidden_size",)
_HEADS = ("num_attention_heads",)
_KV_HEADS = ("num_key_value_heads", "multi_query_group_num")
_MLP = (
    "intermediate_size",
    "n_inner",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "expert_intermediate_size",
    "ffn_hidden_size",
    "expert_ffn_hidden_size",
    "intermediate_size_mlp",
    "ffn_dim",
)


def control_budget() -> float:
    """Bytes of float32 weights a remote model's control may take here: $EFFDEPTH_CONTROL_GB (default 2 GB)."""
    raw = os.environ.get(CONTROL_GB_ENV, "")
    try:
        gb = float(raw) if raw else CONTROL_GB
    except ValueError:
        raise ValueError(f"{CONTROL_GB_ENV}={raw!r}: expected a number of gigabytes, e.g. 2 or 0.5.") from None
    if gb <= 0:
        raise ValueError(f"{CONTROL_GB_ENV}={raw!r}: expected a positive number of gigabytes.")
    return gb * 1e9


def _text(config):
    return getattr(config, "text_config", None) or config


def _width(config) -> int:
    return int(_text(config).hidden_size)


def n_params(config) -> int:
    """Parameters of the architecture, counted on the meta device (no weights are built)."""
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            m = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        return sum(p.numel() for p in m.parameters())
    except Exception:  # an architecture transformers cannot build: the control line says so
        return 0


def narrow_config(config, width: int):
    """`config` at hidden size `width` = d / 2^k: every size tied to the width (heads, key-value
    heads, MLP and expert widths) divided by 2^k (at least one head), the head size, depth, block
    kinds, norms, vocabulary and initialiser range kept. Raises ValueError for a width that is not
    the model's width divided by a power of two."""

    d = _width(config)
    k = 0
    while (d >> k) > width and (d >> k) % 2 == 0:
        k += 1
    if (d >> k) != int(width) or width < 1:
        raise ValueError(f"a control's width must be the model's ({d}) divided by a power of two, not {width}.")
    out = copy.deepcopy(config)
    text = _text(out)
    heads = int(text.num_attention_heads)
    head_dim = getattr(text, "head_dim", None) or d // heads
    text.hidden_size = d >> k
    new_heads = max(1, heads >> k)
    text.num_attention_heads = new_heads
    if getattr(text, "head_dim", None) is not None:
        text.head_dim = head_dim
    elif new_heads * head_dim != text.hidden_size:
        text.num_attention_heads = max(1, text.hidden_size // head_dim)
    for name in _KV_HEADS:
        if getattr(text, name, None):
            kv = int(getattr(text, name))
            setattr(text, name, max(1, kv >> k) if new_heads % max(1, kv >> k) == 0 else 1)
    for name in _MLP:
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            setattr(text, name, max(1, value >> k))
        elif isinstance(value, list):
            setattr(text, name, [max(1, int(v) >> k) for v in value])
    return out


def remote_control_width(config, budget: float | None = None) -> int:
    """The width of a remote model's control: its own when its float32 weights fit `budget` bytes
    (`control_budget()`), else the widest width d / 2^k whose control does (its parameters counted on
    the meta device, no weights built). Raises ValueError when even one head does not fit."""
    budget = control_budget() if budget is None else budget
    d = _width(config)
    width = d
    while True:
        cfg = config if width == d else narrow_config(config, width)
        if n_params(cfg) * 4 <= budget:
            return width
        if width % 2 or width // 2 < 1:
            raise ValueError(
                f"no control width fits {budget / 1e9:.1f} GB of float32 weights (the embedding alone is too large); "
                f"raise {CONTROL_GB_ENV}."
            )
        width //= 2
