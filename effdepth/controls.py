"""The random-init control of a loaded model: same architecture, no training.

A verdict "as in the paper" must be something training produced. In a pre-norm transformer the
residual stream already grows with depth at initialisation, so a pattern such as "second-half layers
write less" can appear without any learning. Every chapter therefore measures, with the same prompts,
the *control*: a model with the same config (hence the same architecture, width, depth, norms and
tied/untied embeddings), randomly initialised by transformers' own initialiser under
`torch.manual_seed(seed)`, with the same tokenizer, dtype and device.

Controls are cached per process (building one is cheap, but a chapter asks for it several times), and
each carries its own `spec` ("<spec> · random init (seed s)") and weight fingerprint, so its
measurements are cached under their own key.
"""

from __future__ import annotations

import os

import torch

from .models import Model, wrap_module

_CACHE: dict[tuple, Model] = {}


def _name(lm: Model) -> str:
    spec = lm.spec.rstrip("/")
    return os.path.basename(spec) if os.path.isdir(os.path.expanduser(spec)) else spec


def control_of(lm: Model, seed: int = 0) -> Model:
    """The random-init control of `lm` for `seed` (same config, tokenizer, dtype, device).

    For a remote model (NDIF holds only its trained weights) the control is built and run here, on
    the CPU in float32, after checking that its weights fit in this machine's free memory."""
    dtype, device = lm.dtype, lm.device
    if lm.remote:
        dtype, device = torch.float32, torch.device("cpu")
        need = sum(p.numel() for p in lm.hf.parameters()) * 4
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if need > free:
            raise ValueError(
                f"The random-init control of '{lm.spec}' runs here, not on NDIF (NDIF serves trained weights "
                f"only), and needs {need / 1e9:.1f} GB of float32 weights; this machine has {free / 1e9:.1f} GB free."
            )
    key = (lm.spec, lm.revision, int(seed), str(dtype), str(device))
    if key not in _CACHE:
        from transformers import AutoModelForCausalLM

        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(int(seed))
            hf = AutoModelForCausalLM.from_config(lm.hf.config, dtype=dtype, trust_remote_code=False)
        finally:
            torch.random.set_rng_state(state)
        hf = hf.to(device)
        _CACHE[key] = wrap_module(hf, lm.tokenizer, spec=f"{_name(lm)} · random init (seed {int(seed)})")
    return _CACHE[key]


def controls_of(lm: Model, seeds=(0,)) -> list[Model]:
    """One control per seed, in order."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("controls_of needs at least one seed (e.g. seeds=(0, 1, 2)).")
    return [control_of(lm, s) for s in seeds]
