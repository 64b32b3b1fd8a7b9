"""Where each architecture family keeps the pieces of SPEC §0.

For a pre-norm decoder block l with residual input h_l, the adapter names the module whose output
is the attention write a_l and the one whose output is the MLP write m_l, such that
h_{l+1} = h_l + a_l + m_l holds exactly. It also names the final norm and the unembedding, so the
logit lens can decode any residual the way the model decodes its last one.

Adding a family is one `Adapter(...)` entry in `ADAPTERS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class UnsupportedArchitecture(ValueError):
    """The model has no adapter, or has no additive residual stream the measurements can read."""


@dataclass(frozen=True)
class Adapter:
    family: str
    model_types: tuple[str, ...]
    layers: str  # dotted path from the CausalLM module to the ModuleList of decoder blocks
    attn: str  # path inside a block to the module whose output is a_l
    mlp: str  # path inside a block to the module whose output is m_l
    final_norm: str
    unembed: str
    embed: str
    attn_is_tuple: bool = False  # a_l is output[0] of the attn module (attention returns (out, weights))
    parallel_residual: bool = False  # MLP reads Norm(h_l), so its "own residual" is h_l, not h_l + a_l
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def module(self, root, path: str):
        """Follow a dotted path (ints index ModuleLists) from `root`; works on nnsight envoys too."""
        obj = root
        for part in path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    def layer_modules(self, root):
        return self.module(root, self.layers)


_LLAMA_LIKE = dict(
    layers="model.layers",
    attn="self_attn",
    mlp="mlp",
    final_norm="model.norm",
    unembed="lm_head",
    embed="model.embed_tokens",
    attn_is_tuple=True,
)
_SANDWICH = dict(
    layers="model.layers",
    attn="post_attention_layernorm",
    mlp="post_feedforward_layernorm",
    final_norm="model.norm",
    unembed="lm_head",
    embed="model.embed_tokens",
)

ADAPTERS: tuple[Adapter, ...] = (
    Adapter("llama", ("llama",), **_LLAMA_LIKE),
    Adapter("mistral", ("mistral",), **_LLAMA_LIKE),
    Adapter("qwen2", ("qwen2",), **_LLAMA_LIKE),
    Adapter("qwen3", ("qwen3",), **_LLAMA_LIKE),
    Adapter(
        "olmo2",
        ("olmo2",),
        **_SANDWICH,
        notes="Norm after each sublayer and none before: a_l, m_l are the post-norm outputs.",
    ),
    Adapter(
        "gemma2",
        ("gemma2",),
        **_SANDWICH,
        notes="Sandwich norms: a_l, m_l are the post-norm outputs; h_0 is the sqrt(d)-scaled embedding.",
    ),
    Adapter(
        "gemma3",
        ("gemma3_text",),
        **_SANDWICH,
        notes="As Gemma 2.",
    ),
    Adapter(
        "gpt2",
        ("gpt2",),
        layers="transformer.h",
        attn="attn",
        mlp="mlp",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        embed="transformer.wte",
        attn_is_tuple=True,
        notes="h_0 is token plus learned position embedding (the input of block 0).",
    ),
    Adapter(
        "gpt_neox",
        ("gpt_neox",),
        layers="gpt_neox.layers",
        attn="attention",
        mlp="mlp",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head",  # transformers 5 names it lm_head (embed_out in 4.x checkpoints is renamed on load)
        embed="gpt_neox.embed_in",
        attn_is_tuple=True,
        parallel_residual=True,
        notes="Parallel residual: attention and MLP both read Norm(h_l).",
    ),
)

# Families refused with a reason rather than "unknown".
_POST_LN = {"bert", "roberta", "distilbert", "albert", "electra", "xlm-roberta", "deberta", "deberta-v2"}


def supported_families() -> list[str]:
    return [a.family for a in ADAPTERS]


def adapter_for(config) -> Adapter:
    """The adapter for a transformers config, or an error that names the supported families."""
    model_type = getattr(config, "model_type", None)
    text_config = getattr(config, "text_config", None)
    if model_type not in {t for a in ADAPTERS for t in a.model_types} and text_config is not None:
        model_type = getattr(text_config, "model_type", model_type)
    supported = ", ".join(supported_families())
    if model_type in _POST_LN:
        raise UnsupportedArchitecture(
            f"'{model_type}' is a post-LN encoder: its residual stream is normalised after every "
            f"sublayer, so h_(l+1) = h_l + a_l + m_l does not hold and layer contributions are not "
            f"defined (SPEC §0). Supported decoder families: {supported}."
        )
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            if adapter.family == "gpt_neox" and not getattr(config, "use_parallel_residual", True):
                return Adapter(**{**adapter.__dict__, "parallel_residual": False})
            return adapter
    extra = getattr(config, "effdepth_adapter", None)
    if extra:  # a custom architecture may declare its own adapter in its config (see zoo / moeut)
        return Adapter(**extra)
    raise UnsupportedArchitecture(
        f"No adapter for model_type '{model_type}'. Supported families: {supported}. "
        f"Add one `Adapter(...)` entry to effdepth/adapters.py naming where the attention and MLP "
        f"outputs, the final norm and the unembedding live."
    )


def mlp_own_residual(adapter: Adapter, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The residual the MLP writes into (SPEC §1): h_l + a_l, or h_l under a parallel residual."""
    return h if adapter.parallel_residual else h + a
