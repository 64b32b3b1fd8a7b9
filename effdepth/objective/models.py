"""§3.5's two architectures at matched parameter count, built fresh or loaded from a grid folder,
and their random-init controls."""

from __future__ import annotations

from pathlib import Path

import torch

from effdepth.access.controls import control_of
from effdepth.access.load import load_model
from effdepth.access.moeut import MoEUTForCausalLM, matched_config
from effdepth.objective.grid import ARCHS, GridSpec
from effdepth.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE
from effdepth.zoo.specs import llama_config


def transformer_config(spec: GridSpec):
    return llama_config(spec.n_layers, spec.d_model, spec.n_heads, spec.d_ff)


def transformer_params(spec: GridSpec) -> int:
    d, L, ff, V = spec.d_model, spec.n_layers, spec.d_ff, transformer_config(spec).vocab_size
    return 2 * V * d + L * (4 * d * d + 3 * d * ff + 2 * d) + d


def moeut_config(spec: GridSpec):
    return matched_config(
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
    return MoEUTForCausalLM(moeut_config(spec)).float()


def count_params(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def load_folder(folder: Path, label: str, device: str = "cpu", dtype="float32"):
    """A grid/fine-tuning folder as an effdepth `Model` labelled ``label`` (MoEUT folders load
    because :mod:`effdepth.access.moeut` registers its architecture)."""
    model = load_model(str(folder), device=device, dtype=dtype)
    model.spec = label
    return model


def control_models(grid, device: str = "cpu") -> dict:
    """{(arch, seed): the random-init control} (`effdepth.access.controls.control_of` with the grid seed):
    both objectives of a seed start from this same untrained model, so there is one per (arch, seed)."""
    out = {}
    for arch, obj, seed in sorted(grid.folders):
        if (arch, seed) not in out:
            out[(arch, seed)] = control_of(grid.load(arch, obj, seed, device=device), seed=seed)
    return out
