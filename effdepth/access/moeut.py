"""MoEUT in plain PyTorch, as a transformers causal LM the whole book can measure.

MoEUT (Csordás, Irie, Schmidhuber, Potts & Manning 2024, "MoEUT: Mixture-of-Experts Universal
Transformers") is a Universal Transformer whose few distinct layers are repeated: a *group* of
``group_size`` layers with their own weights is applied ``num_hidden_layers / group_size`` times in a
row (layer i uses the weights of distinct layer ``i % group_size``). Each distinct layer has

* **SwitchHead attention**: a few heads whose queries and keys are dense, and whose value and output
  projections are mixtures of ``att_n_experts`` experts per head, ``att_k`` of them chosen per token
  by a sigmoid gate (value experts gated from the key side, output experts from the query side);
* a **σ-MoE feed-forward** layer: ``ff_n_experts`` small ReLU MLPs of width ``ff_expert_size``, the
  ``ff_k`` with the highest sigmoid gate chosen per token and weighted by that gate;
* **peri-layernorm**: a LayerNorm only in front of the projections that feed a softmax or a sigmoid
  (queries, keys and every expert gate); the values and the expert MLPs read the raw residual, and
  one LayerNorm sits before the unembedding. The residual stream is purely additive::

      a_l = SwitchHead(h_l)          h_l' = h_l + a_l
      m_l = σ-MoE(h_l')              h_{l+1} = h_l' + m_l

  which is exactly the identity the measurements need (methods page §0).

During training both gates get MoEUT's entropy regulariser (maximise the entropy of the
batch-averaged expert distribution), added to the gradient through the logits so that any training
loop that only sees ``.logits`` (e.g. :func:`effdepth.zoo.train.train`) optimises it.

**Module paths.** Shared weights called several times would give nnsight one module seen several
times per forward. Here the weights live once, in ``model.shared_layers[g]`` (whose ``forward`` is
never called), and every *application* is its own parameter-free module ``model.layers[i]`` with
children ``.attn`` and ``.mlp`` that hold a plain reference (not a registered submodule) to the shared
weights. So ``model.layers[i].attn.output`` is a_i of application i only, ``state_dict`` stores each
weight once, and the measurements count ``num_hidden_layers`` layers.

Registering: importing this module registers ``MoEUTConfig`` (``model_type = "effdepth_moeut"``) and
``MoEUTForCausalLM`` with ``AutoConfig`` / ``AutoModelForCausalLM``, so ``effdepth.load_model(folder)``
and ``AutoModelForCausalLM.from_pretrained(folder)`` load a saved MoEUT. The config declares its own
adapter (``config.effdepth_adapter``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

MODEL_TYPE = "effdepth_moeut"

ADAPTER = dict(
    family="moeut",
    model_types=(MODEL_TYPE,),
    layers="model.layers",
    attn="attn",
    mlp="mlp",
    final_norm="model.norm",
    unembed="lm_head",
    embed="model.embed_tokens",
    attn_is_tuple=False,
    parallel_residual=False,
    notes="MoEUT: layer i applies the shared weights of distinct layer i % group_size; each application "
    "is its own module (model.layers[i]), so a_l and m_l are read per application.",
)


class MoEUTConfig(PretrainedConfig):
    """Sizes of a MoEUT. ``num_hidden_layers`` counts layer *applications* (the depth the
    measurements see); ``group_size`` distinct layers are repeated ``num_hidden_layers // group_size``
    times."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 100,
        hidden_size: int = 128,
        num_hidden_layers: int = 8,
        group_size: int = 2,
        num_attention_heads: int = 4,
        head_dim: int = 32,
        att_n_experts: int = 4,
        att_k: int = 2,
        ff_n_experts: int = 16,
        ff_expert_size: int = 32,
        ff_k: int = 4,
        max_position_embeddings: int = 512,
        rope_theta: float = 10000.0,
        norm_eps: float = 1e-5,
        ff_entropy_reg: float = 0.01,
        att_entropy_reg: float = 0.001,
        moe_impl: str = "auto",
        tie_word_embeddings: bool = False,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        **kwargs,
    ):
        if num_hidden_layers % group_size:
            raise ValueError(f"num_hidden_layers={num_hidden_layers} must be a multiple of group_size={group_size}.")
        if not 1 <= att_k <= att_n_experts or not 1 <= ff_k <= ff_n_experts:
            raise ValueError("need 1 <= att_k <= att_n_experts and 1 <= ff_k <= ff_n_experts.")
        if moe_impl not in ("auto", "dense", "sparse"):
            raise ValueError("moe_impl must be 'auto', 'dense' or 'sparse'.")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.group_size = group_size
        self.num_attention_heads = num_attention_heads
        self.head_dim = head_dim
        self.att_n_experts = att_n_experts
        self.att_k = att_k
        self.ff_n_experts = ff_n_experts
        self.ff_expert_size = ff_expert_size
        self.ff_k = ff_k
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.norm_eps = norm_eps
        self.ff_entropy_reg = ff_entropy_reg
        self.att_entropy_reg = att_entropy_reg
        self.moe_impl = moe_impl
        super().__init__(
            tie_word_embeddings=tie_word_embeddings,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            **kwargs,
        )

    @property
    def n_repeats(self) -> int:
        return self.num_hidden_layers // self.group_size

    @property
    def effdepth_adapter(self) -> dict:
        """Where a_l, m_l, the final norm and the unembedding live (read by `effdepth.access.adapters.adapter_for`)."""
        return dict(ADAPTER)


# ------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(position_ids: torch.Tensor, head_dim: int, theta: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [B, T, head_dim] for position ids [B, T]."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim))
    freqs = position_ids[..., None].float() * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """−entropy of the expert distribution averaged over tokens (logits [..., E]); minimised in training."""
    logp = torch.log_softmax(logits.float().reshape(-1, logits.shape[-1]), -1)
    mean_logp = torch.logsumexp(logp, 0) - math.log(logp.shape[0])
    return (mean_logp.exp() * mean_logp).sum()


def _topk_gate(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid gates of the top-k experts: (values [..., k], indices [..., k])."""
    return torch.sigmoid(logits).topk(k, dim=-1, sorted=False)


class _AuxLoss(torch.autograd.Function):
    """Identity on the logits whose backward also sends gradient 1 into an auxiliary loss."""

    @staticmethod
    def forward(ctx, logits, aux):
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad):
        return grad, torch.ones((), dtype=grad.dtype, device=grad.device)


class SwitchHeadWeights(nn.Module):
    """Weights of one distinct layer's SwitchHead attention (its forward is `compute`, never `__call__`)."""

    def __init__(self, config: MoEUTConfig):
        super().__init__()
        d, H, dh, E = config.hidden_size, config.num_attention_heads, config.head_dim, config.att_n_experts
        self.H, self.dh, self.E, self.k = H, dh, E, config.att_k
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.q = nn.Linear(d, H * dh, bias=False)
        self.k_proj = nn.Linear(d, H * dh, bias=False)
        self.v_sel = nn.Linear(d, H * E, bias=False)
        self.o_sel = nn.Linear(d, H * E, bias=False)
        self.v_experts = nn.Parameter(torch.empty(d, H * E * dh))  # per (head, expert): d -> dh
        self.o_experts = nn.Parameter(torch.empty(H * E * dh, d))  # per (head, expert): dh -> d

    def compute(self, x, attention_mask, position_embeddings, aux: list | None):
        B, T, _ = x.shape
        H, dh, E = self.H, self.dh, self.E
        xn = self.norm(x)
        q = self.q(xn).view(B, T, H, dh)
        k = self.k_proj(xn).view(B, T, H, dh)
        cos, sin = position_embeddings
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin

        v_logits = self.v_sel(xn).view(B, T, H, E)
        o_logits = self.o_sel(xn).view(B, T, H, E)
        gv_val, gv_idx = _topk_gate(v_logits, self.k)
        go_val, go_idx = _topk_gate(o_logits, self.k)
        gv = torch.zeros_like(v_logits).scatter(-1, gv_idx, gv_val)  # [B, T, H, E], zero off the top-k
        go = torch.zeros_like(o_logits).scatter(-1, go_idx, go_val)
        v = (x @ self.v_experts).view(B, T, H, E, dh)
        v = (v * gv[..., None]).sum(3)  # [B, T, H, dh]

        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attention_mask
        ).transpose(1, 2)  # [B, T, H, dh]
        out = (att[:, :, :, None, :] * go[..., None]).reshape(B, T, H * E * dh) @ self.o_experts
        if aux is not None:
            aux.append(("att", _entropy_loss(v_logits) + _entropy_loss(o_logits)))
        return out


class SigmaMoEWeights(nn.Module):
    """Weights of one distinct layer's σ-MoE feed-forward (its forward is `compute`, never `__call__`)."""

    def __init__(self, config: MoEUTConfig):
        super().__init__()
        d, E, de = config.hidden_size, config.ff_n_experts, config.ff_expert_size
        self.E, self.de, self.k = E, de, config.ff_k
        self.impl = config.moe_impl
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.sel = nn.Linear(d, E, bias=False)
        self.keys = nn.Parameter(torch.empty(E, d, de))
        self.values = nn.Parameter(torch.empty(E, de, d))

    def compute(self, x, aux: list | None):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        logits = self.sel(self.norm(x2))
        g_val, g_idx = _topk_gate(logits, self.k)
        impl = self.impl
        if impl == "auto":  # dense is faster for small or well-filled experts (and on GPUs), sparse for many small ones
            impl = "dense" if (x2.is_cuda or self.E <= 2 * self.k or x2.shape[0] < 64) else "sparse"
        if impl == "dense":
            gate = torch.zeros_like(logits).scatter(-1, g_idx, g_val)  # [N, E]
            h = torch.relu(x2 @ self.keys.transpose(0, 1).reshape(shape[-1], self.E * self.de))
            h = (h.view(-1, self.E, self.de) * gate[..., None]).view(-1, self.E * self.de)
            out = h @ self.values.reshape(self.E * self.de, shape[-1])
        else:
            out = torch.zeros_like(x2)
            for e in range(self.E):
                rows, slot = (g_idx == e).nonzero(as_tuple=True)
                if rows.numel() == 0:
                    continue
                h = torch.relu(x2[rows] @ self.keys[e]) * g_val[rows, slot][:, None]
                out = out.index_add(0, rows, h @ self.values[e])
        if aux is not None:
            aux.append(("ff", _entropy_loss(logits)))
        return out.view(shape)


class MoEUTSharedLayer(nn.Module):
    """The weights of one distinct layer: SwitchHead attention and σ-MoE feed-forward."""

    def __init__(self, config: MoEUTConfig):
        super().__init__()
        self.attention = SwitchHeadWeights(config)
        self.ffn = SigmaMoEWeights(config)

    def forward(self, *args, **kwargs):
        raise RuntimeError("Shared MoEUT weights are applied through model.layers[i], not called directly.")


class _Application(nn.Module):
    """Base of the per-application modules: holds an unregistered reference to shared weights."""

    def __init__(self, weights: nn.Module, layer_idx: int, shared_idx: int):
        super().__init__()
        object.__setattr__(self, "_weights", weights)  # not a submodule: its parameters live in shared_layers
        self.layer_idx = layer_idx
        self.shared_idx = shared_idx

    @property
    def weights(self) -> nn.Module:
        return self._weights

    def extra_repr(self) -> str:
        return f"layer {self.layer_idx}, weights of shared_layers[{self.shared_idx}]"


class MoEUTAttention(_Application):
    """Application i of SwitchHead attention: output a_i [B, T, d]."""

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, aux=None):
        return self._weights.compute(hidden_states, attention_mask, position_embeddings, aux)


class MoEUTFeedForward(_Application):
    """Application i of the σ-MoE feed-forward: output m_i [B, T, d]."""

    def forward(self, hidden_states, aux=None):
        return self._weights.compute(hidden_states, aux)


class MoEUTBlock(nn.Module):
    """Layer application i: h_{i+1} = h_i + a_i + m_i (returns a tensor, like transformers 5 decoder layers)."""

    def __init__(self, shared: MoEUTSharedLayer, layer_idx: int, shared_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.shared_idx = shared_idx
        self.attn = MoEUTAttention(shared.attention, layer_idx, shared_idx)
        self.mlp = MoEUTFeedForward(shared.ffn, layer_idx, shared_idx)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, aux=None, **kwargs):
        a = self.attn(hidden_states, attention_mask=attention_mask, position_embeddings=position_embeddings, aux=aux)
        h = hidden_states + a
        m = self.mlp(h, aux=aux)
        return h + m


# ------------------------------------------------------------------------------------------------
# transformers classes
# ------------------------------------------------------------------------------------------------


class MoEUTPreTrainedModel(PreTrainedModel):
    config_class = MoEUTConfig
    base_model_prefix = "model"
    _no_split_modules = ["MoEUTBlock"]
    _supports_sdpa = True

    def _init_weights(self, module):
        from transformers import initialization as init

        c = self.config
        d = c.hidden_size
        out_scale = 1.0 / math.sqrt(2 * c.num_hidden_layers)
        if isinstance(module, SwitchHeadWeights):
            for lin in (module.q, module.k_proj, module.v_sel, module.o_sel):
                init.normal_(lin.weight, std=d**-0.5)
            init.normal_(module.v_experts, std=d**-0.5)
            init.normal_(module.o_experts, std=out_scale / math.sqrt(c.num_attention_heads * c.att_k * c.head_dim))
        elif isinstance(module, SigmaMoEWeights):
            init.normal_(module.sel.weight, std=d**-0.5)
            init.normal_(module.keys, std=d**-0.5)
            init.normal_(module.values, std=out_scale / math.sqrt(c.ff_k * c.ff_expert_size))
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=1.0)
        elif isinstance(module, nn.Linear):  # the unembedding
            init.normal_(module.weight, std=d**-0.5)


class MoEUTModel(MoEUTPreTrainedModel):
    """Embedding, the shared distinct layers, their ``num_hidden_layers`` applications and the final norm."""

    def __init__(self, config: MoEUTConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.shared_layers = nn.ModuleList(MoEUTSharedLayer(config) for _ in range(config.group_size))
        self.layers = nn.ModuleList(
            MoEUTBlock(self.shared_layers[i % config.group_size], i, i % config.group_size)
            for i in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, aux=None, **kwargs):
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = h.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=h.device)[None]
        pe = rope_tables(position_ids, self.config.head_dim, self.config.rope_theta, h.dtype)
        mask = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()[None, None]  # [1, 1, T, T]
        if attention_mask is not None and attention_mask.ndim == 2 and not bool(attention_mask.all()):
            keys = attention_mask.bool()[:, None, None, :]
            mask = (mask & keys) | torch.eye(T, dtype=torch.bool, device=h.device)  # a pad query still sees itself
        for layer in self.layers:
            h = layer(h, attention_mask=mask, position_embeddings=pe, aux=aux)
        return self.norm(h)


class MoEUTForCausalLM(MoEUTPreTrainedModel, GenerationMixin):
    """MoEUT causal LM (see the module docstring). No KV cache: generation re-runs the whole prefix."""

    def __init__(self, config: MoEUTConfig):
        super().__init__(config)
        self.model = MoEUTModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        logits_to_keep: int = 0,
        use_cache=None,
        past_key_values=None,
        return_dict=None,
        **kwargs,
    ):
        train_aux = self.training and torch.is_grad_enabled()
        aux = [] if train_aux else None
        h = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            aux=aux,
        )
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            h = h[:, -logits_to_keep:]
        logits = self.lm_head(h)
        if aux:
            c = self.config
            reg = (
                sum((c.att_entropy_reg if kind == "att" else c.ff_entropy_reg) * v for kind, v in aux)
                / c.num_hidden_layers
            )
            logits = _AuxLoss.apply(logits, reg.to(logits.dtype))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _supports_default_dynamic_cache(self) -> bool:  # transformers' generate: no cache to build
        return False


AutoConfig.register(MODEL_TYPE, MoEUTConfig, exist_ok=True)
AutoModelForCausalLM.register(MoEUTConfig, MoEUTForCausalLM, exist_ok=True)


# ------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------


def n_params(model: nn.Module) -> int:
    """Number of distinct parameters (shared weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def moeut_param_count(config: MoEUTConfig) -> int:
    """Parameter count of a MoEUT of ``config`` without building it."""
    c = config
    d, H, dh, Ea, Ef, de = (
        c.hidden_size,
        c.num_attention_heads,
        c.head_dim,
        c.att_n_experts,
        c.ff_n_experts,
        c.ff_expert_size,
    )
    att = 2 * d + 2 * d * H * dh + 2 * d * H * Ea + 2 * H * Ea * dh * d
    ff = 2 * d + d * Ef + 2 * Ef * de * d
    emb = c.vocab_size * d * (1 if c.tie_word_embeddings else 2)
    return emb + c.group_size * (att + ff) + 2 * d


def matched_config(target_params: int, **kwargs) -> MoEUTConfig:
    """A MoEUT config whose parameter count is as close as possible to ``target_params``, by choosing
    the number of feed-forward experts (every other size as given in ``kwargs``)."""
    base = MoEUTConfig(**{**kwargs, "ff_n_experts": max(1, kwargs.get("ff_k", 4))})
    per_expert = moeut_param_count(
        MoEUTConfig(**{**kwargs, "ff_n_experts": base.ff_n_experts + 1})
    ) - moeut_param_count(base)
    n = base.ff_n_experts + round((target_params - moeut_param_count(base)) / per_expert)
    n = max(base.ff_k, n)
    return MoEUTConfig(**{**kwargs, "ff_n_experts": int(n)})
