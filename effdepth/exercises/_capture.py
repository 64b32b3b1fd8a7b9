"""Plain-hook helpers the checks use to build the wrong variants of each exercise (the references
themselves come from the measurement modules)."""

from __future__ import annotations

import torch


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


@torch.no_grad()
def capture(model, ids: torch.Tensor, edit=None):
    """(h [L+1, T, d], a [L, T, d], m [L, T, d], logits [T, V]) of one prompt ids [T], float32.

    h_b for b < L is the input of block b, h_L the input of the final norm. `edit(b, h) -> h` may
    replace the residual h_b ([T, d], b = 0 … L) the model reads, before it reads it."""
    adapter = model.adapter
    blocks = adapter.layer_modules(model.hf)
    L = len(blocks)
    hs, attn, mlp = [None] * (L + 1), [None] * L, [None] * L

    def pre(b):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            if edit is not None:
                new = edit(b, x[0].clone())
                if new is not None:
                    x = new[None].to(x.dtype)
                    if args:
                        args = (x,) + tuple(args[1:])
                    else:
                        kwargs = {**kwargs, "hidden_states": x}
            hs[b] = x[0].float()
            return args, kwargs

        return hook

    def out(store, l):
        def hook(module, args, output):
            store[l] = _first(output)[0].float()

        return hook

    handles = []
    for l, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(pre(l), with_kwargs=True))
        handles.append(adapter.module(block, adapter.attn).register_forward_hook(out(attn, l)))
        handles.append(adapter.module(block, adapter.mlp).register_forward_hook(out(mlp, l)))
    handles.append(adapter.module(model.hf, adapter.final_norm).register_forward_pre_hook(pre(L), with_kwargs=True))
    try:
        logits = model.hf(input_ids=ids.reshape(1, -1).to(model.device), use_cache=False).logits[0].float()
    finally:
        for h in handles:
            h.remove()
    return torch.stack(hs), torch.stack(attn), torch.stack(mlp), logits
