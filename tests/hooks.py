"""Independent reference computations with plain PyTorch forward hooks (no nnsight, no adapters API).

Each family's read-out points are written out by hand here, separately from effdepth/access/adapters.py,
so a wrong adapter entry shows up as a disagreement.
"""

import torch

READ_POINTS = {  # family: (layers path, attn module, attn output is tuple, mlp module)
    "llama": ("model.layers", "self_attn", True, "mlp"),
    "mistral": ("model.layers", "self_attn", True, "mlp"),
    "qwen2": ("model.layers", "self_attn", True, "mlp"),
    "qwen3": ("model.layers", "self_attn", True, "mlp"),
    "olmo2": ("model.layers", "post_attention_layernorm", False, "post_feedforward_layernorm"),
    "gemma2": ("model.layers", "post_attention_layernorm", False, "post_feedforward_layernorm"),
    "gemma3": ("model.layers", "post_attention_layernorm", False, "post_feedforward_layernorm"),
    "gpt2": ("transformer.h", "attn", True, "mlp"),
    "gpt_neox": ("gpt_neox.layers", "attention", True, "mlp"),
}


def get(root, path):
    for p in path.split("."):
        root = getattr(root, p)
    return root


@torch.no_grad()
def capture(hf, family, ids, attention_mask=None):
    """h (block inputs, L+1 incl. the last block's output), a, m per layer: lists of [B, T, d]."""
    layers_path, attn_name, attn_tuple, mlp_name = READ_POINTS[family]
    layers = get(hf, layers_path)
    hs, attns, mlps, handles = [], [], [], []
    for layer in layers:
        handles.append(
            layer.register_forward_pre_hook(
                lambda mod, args, kwargs: hs.append((args[0] if args else kwargs["hidden_states"]).clone()),
                with_kwargs=True,
            )
        )
        handles.append(
            get(layer, attn_name).register_forward_hook(
                lambda mod, i, o: attns.append((o[0] if attn_tuple else o).clone())
            )
        )
        handles.append(get(layer, mlp_name).register_forward_hook(lambda mod, i, o: mlps.append(o.clone())))
    last = []
    handles.append(
        layers[-1].register_forward_hook(lambda mod, i, o: last.append((o[0] if isinstance(o, tuple) else o).clone()))
    )
    try:
        out = hf(input_ids=ids, attention_mask=attention_mask)
    finally:
        for h in handles:
            h.remove()
    return hs + last, attns, mlps, out.logits
