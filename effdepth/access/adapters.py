"""Where each architecture family keeps the pieces of methods page §0.

For a pre-norm decoder block l with residual input h_l, the adapter names the module whose output
is the attention write a_l and the one whose output is the MLP write m_l, such that
h_{l+1} = h_l + a_l + m_l holds exactly. It also names the final norm and the unembedding, so the
logit lens can decode any residual the way the model decodes its last one.

Adding a family is one `Adapter(...)` entry in `ADAPTERS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from effdepth.errors import UnsupportedArchitecture
from effdepth.testing import perturb, shrink_config


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
        """Follow a dotted path (ints index ModuleLists) from `root`; works on nnsight envoys too.

        `path` may list alternatives, 'linear_attn|self_attn.o_proj': the first that exists in `root`
        (hybrid models whose blocks differ in kind)."""
        options = path.split("|")
        for i, option in enumerate(options):
            obj = root
            try:
                for part in option.split("."):
                    obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
            except AttributeError:
                if i == len(options) - 1:
                    raise
                continue
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

# Families refused with a reason rather than "unknown" (model types of transformers' causal-LM list
# that the module-tree derivation would also refuse, said in words a reader can check).
_POST_LN_REASON = (
    "post-LN: the residual stream is normalised after every sublayer, so h_(l+1) = h_l + a_l + m_l "
    "does not hold and layer contributions are not defined (methods page §0)"
)
_POST_LN = {"bert", "roberta", "distilbert", "albert", "electra", "xlm-roberta", "deberta", "deberta-v2"}
REFUSED: dict[str, str] = {
    **dict.fromkeys(
        _POST_LN
        | {
            "bert-generation",
            "big_bird",
            "camembert",
            "data2vec-text",
            "ernie",
            "megatron-bert",
            "rembert",
            "roc_bert",
            "roformer",
            "xlm-roberta-xl",
            "xmod",
            "openai-gpt",
            "xlm",
        },
        _POST_LN_REASON,
    ),
    **dict.fromkeys(
        (
            "bart",
            "bigbird_pegasus",
            "blenderbot",
            "blenderbot-small",
            "marian",
            "mbart",
            "mvp",
            "pegasus",
            "plbart",
            "prophetnet",
            "whisper",
            "trocr",
        ),
        "encoder-decoder: the decoder's residual also reads the encoder (cross-attention), a third write per block",
    ),
    **dict.fromkeys(
        ("mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm"),
        "state-space only: no attention sublayer, so there is no a_l to read",
    ),
    "falcon_h1": "parallel attention and Mamba mixers are summed before the residual add: no module's output is a_l",
    "nemotron_h": "each block holds one mixer (Mamba, attention or MLP), not an attention and an MLP write",
    "zamba": "a shared attention block is re-applied between Mamba blocks: writes are not per-block attention + MLP",
    "zamba2": "a shared attention block is re-applied between Mamba blocks: writes are not per-block attention + MLP",
    "gpt_oss": "its MLP returns a tuple (output, router scores); the measurements read m_l as the MLP module's whole "
    "output (reading element 0 is not implemented; the identity holds with it)",
    "falcon": "with parallel attention (every released Falcon but Falcon-RW) the block adds attention into the MLP's "
    "output tensor in place, so a hook's m_l becomes a_l + m_l",
    "opt": "no MLP module: the block applies fc1, activation and fc2 inline to the residual flattened to [B*T, d], so no "
    "module's output is m_l in the residual's shape",
    "reformer": "reversible residual: two residual streams, not one additive stream",
    "xlnet": "two-stream attention with a relative-position memory, not a causal decoder stack",
}
"""model_type -> why effdepth refuses it (one line). Families not named here and not in `ADAPTERS`
are derived from the module tree (`derive_adapter`) and accepted only if the identity holds."""

REFUSED_UNLESS = {
    "falcon": lambda c: not (getattr(c, "parallel_attn", True) or getattr(c, "new_decoder_architecture", False)),
}
"""model_type -> config test under which a `REFUSED` type is derived after all (Falcon-RW: sequential
attention then MLP, no in-place add)."""


def supported_families() -> list[str]:
    """The hand-written (declarative) families; many more are derived, see `family_table`."""
    return [a.family for a in ADAPTERS]


def _model_type(config) -> str | None:
    model_type = getattr(config, "model_type", None)
    text_config = getattr(config, "text_config", None)
    if model_type not in {t for a in ADAPTERS for t in a.model_types} and text_config is not None:
        model_type = getattr(text_config, "model_type", model_type)
    return model_type


def adapter_for(config) -> Adapter:
    """The adapter for a transformers config, or an `UnsupportedArchitecture` that says why.

    In order: a declarative entry of `ADAPTERS`; a refusal of `REFUSED`; an `effdepth_adapter` dict in
    the config (the fields of `Adapter`, for an architecture the project has never seen); else the
    adapter derived from the module tree of a tiny random instance of the same config class and
    confirmed there by the identity and by logit parity (`derive_adapter`)."""
    model_type = _model_type(config)
    own = getattr(config, "model_type", None)
    if own != model_type and not getattr(config, "effdepth_adapter", None):  # a multimodal wrapper around a text model
        raise UnsupportedArchitecture(
            f"'{own}' is refused: a multimodal wrapper (its decoder blocks sit under the wrapper): "
            f"load its text model (model_type '{model_type}') instead."
        )
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            if adapter.family == "gpt_neox" and not getattr(config, "use_parallel_residual", True):
                return Adapter(**{**adapter.__dict__, "parallel_residual": False})
            return adapter
    extra = getattr(config, "effdepth_adapter", None)
    if extra:  # a custom architecture may declare its own adapter in its config (see zoo / moeut)
        try:
            return Adapter(**extra)
        except TypeError as err:
            raise UnsupportedArchitecture(
                f"config.effdepth_adapter is not a valid adapter ({err}); its keys are the fields of effdepth.access.adapters.Adapter."
            ) from None
    if model_type in REFUSED and not REFUSED_UNLESS.get(model_type, lambda c: False)(config):
        raise UnsupportedArchitecture(f"'{model_type}' is refused: {REFUSED[model_type]}.")
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    known = {model_type, getattr(config, "model_type", None)} & set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if known and hasattr(config, "to_json_string"):
        key = (type(config), config.to_json_string(use_diff=False))
        if key not in _DERIVED:
            try:
                _DERIVED[key] = derive_adapter_from_config(config)
            except UnsupportedArchitecture as err:
                _DERIVED[key] = err
        if isinstance(_DERIVED[key], UnsupportedArchitecture):
            raise _DERIVED[key]
        return _DERIVED[key]
    raise UnsupportedArchitecture(
        f"No adapter for model_type '{model_type}': transformers has no causal LM of that type. "
        f"Declare one in the model's config.json as \"effdepth_adapter\" (see CONTRIBUTING.md, 'A new family'), or add "
        f"an `Adapter(...)` entry to effdepth/access/adapters.py. Hand-written families: {', '.join(supported_families())}."
    )


_DERIVED: dict = {}  # (config class, config JSON) -> derived Adapter or the refusal


def derive_adapter_from_config(config, seed: int = 0) -> Adapter:
    """Build a tiny random instance of `config`'s architecture (same switches, tiny sizes, every kind
    of block once; `testing.shrink_config`) and derive and confirm its adapter there (`derive_adapter`)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    model_type = _model_type(config)
    if getattr(config, "sub_configs", None) and getattr(config, "text_config", None) is not None:
        raise UnsupportedArchitecture(
            f"'{model_type}' is a multimodal wrapper: load its text model (model_type "
            f"'{getattr(config.text_config, 'model_type', '?')}') instead."
        )
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedArchitecture(
            f"'{model_type}' is refused: encoder-decoder, the decoder also reads the encoder."
        )
    if getattr(config, "sub_configs", None):
        raise UnsupportedArchitecture(
            f"'{model_type}' is refused: a composite model ({', '.join(config.sub_configs)}), not one decoder stack; "
            f"not derived automatically (declare an `effdepth_adapter` in its config.json if its residual is additive)."
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tiny = shrink_config(config)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = perturb(AutoModelForCausalLM.from_config(tiny, dtype=torch.float32, trust_remote_code=False)).eval()
            ids = torch.randint(3, tiny.vocab_size, (1, 9))
    except UnsupportedArchitecture:
        raise
    except Exception as err:  # a config class transformers cannot instantiate small: say so, do not guess
        raise UnsupportedArchitecture(
            f"'{model_type}': no tiny instance could be built to derive its adapter ({type(err).__name__}: {' '.join(str(err).split())[:200]})."
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return derive_adapter(model, ids, family=model_type)


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


@dataclass
class _Forward:
    """One plain forward with every submodule's first input and first output recorded."""

    inputs: dict
    outputs: dict  # module -> (tensor, returned a tuple)
    calls: dict  # module -> number of calls
    order: list  # modules in order of their first output
    logits: torch.Tensor


@torch.no_grad()
def _record(model, ids) -> _Forward:
    inputs, outputs, calls, order = {}, {}, {}, []

    def pre(mod, args, kwargs):
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("input"))
        inputs.setdefault(mod, x)

    def post(mod, args, kwargs, out):
        calls[mod] = calls.get(mod, 0) + 1
        o = _first(out)
        if isinstance(o, torch.Tensor) and mod not in outputs:
            outputs[mod] = (o, isinstance(out, (tuple, list)))
            order.append(mod)

    handles = []
    for mod in model.modules():
        if mod is not model:
            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(mod.register_forward_hook(post, with_kwargs=True))
    try:
        logits = model(input_ids=ids, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    return _Forward(inputs, outputs, calls, order, logits)


def _close(x, y, scale) -> bool:
    return x.shape == y.shape and bool((x - y).abs().max() <= IDENTITY_RTOL * scale)


IDENTITY_RTOL = 1e-5
"""The identity h_(l+1) = h_l + a_l + m_l must hold to this fraction of max |h_(l+1)| (float32 round-off)."""

IDENTITY_RTOLS = {
    torch.float32: IDENTITY_RTOL,
    torch.float64: IDENTITY_RTOL,
    torch.bfloat16: 2.0**-7,
    torch.float16: 2.0**-10,
}
"""Per dtype: the fraction of max |h_(l+1)| (and of max |logit|) the identity and logit parity must hold to.
float32: 1e-5 (round-off of a few adds); bfloat16: 2^-7, two roundings of the largest entry at bf16's 8-bit
mantissa (the identity is checked in the block's own order of addition, so in practice it holds to 0);
float16: 2^-10 likewise at its 11-bit mantissa."""


def identity_rtol(dtype) -> float:
    """The identity / logit-parity tolerance for a model of `dtype` (`IDENTITY_RTOLS`; float32's for others)."""
    return IDENTITY_RTOLS.get(dtype, IDENTITY_RTOL)


def identity_error(h: torch.Tensor, a: torch.Tensor, m: torch.Tensor, out: torch.Tensor) -> float:
    """|h + a + m - out| / max(1, max |out|), in the tensors' own dtype and in the order of addition the
    block uses: sequential blocks add (h + a) + m, parallel-residual blocks (GPT-NeoX) m + a + h, i.e.
    h + (a + m); the smaller of the two (in float32 both agree to round-off). In bfloat16 the other order
    is off by one rounding (0.0039 of |h| for a tiny GPT-NeoX), which says nothing about the read points."""
    scale = max(1.0, float(out.float().abs().max()))
    errs = [float(((h + a) + m - out).float().abs().max()), float((h + (a + m) - out).float().abs().max())]
    return min(errs) / scale


@torch.no_grad()
def derive_adapter(model, ids, family: str | None = None) -> Adapter:
    """The adapter of a transformers causal LM, read off its module tree and one forward of `ids`.

    The decoder blocks are the ModuleList of `num_hidden_layers` modules with the most parameters; the
    embedding and unembedding are the model's own input and output embeddings; the final norm is the
    module outside the blocks whose input is the last block's output and whose output is the
    unembedding's input. In each block, a_l and m_l are the two submodule outputs (a before m, the
    shallowest pair) that add up to the block's update h_(l+1) - h_l; blocks of different kinds give
    alternatives ('linear_attn|self_attn'). The residual is parallel when perturbing a_l leaves m_l
    unchanged. The result is then confirmed (`confirm`) on the same model: the identity at every
    block and the logits of a plain forward reproduced by decoding the last residual. Raises
    `UnsupportedArchitecture` with the first thing that does not hold."""
    family = family or getattr(model.config, "model_type", "?")
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(cfg, "num_hidden_layers", None)
    names = {m: name for name, m in model.named_modules()}

    def refuse(why):
        return UnsupportedArchitecture(f"'{family}' is refused: {why}.")

    lists = [
        (name, ml) for name, ml in model.named_modules() if isinstance(ml, torch.nn.ModuleList) and n and len(ml) == n
    ]
    if not lists:
        raise refuse(f"no list of num_hidden_layers={n} decoder blocks in its module tree")
    layers_path, blocks = max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    embed, head = names.get(model.get_input_embeddings()), model.get_output_embeddings()
    if embed is None or head is None or names.get(head) is None:
        raise refuse("no input or output embedding module")
    run = _record(model, ids)
    if any(b not in run.outputs or b not in run.inputs for b in blocks):
        raise refuse("a decoder block is not called in a plain forward")
    inside = set()
    for b in blocks:
        inside |= set(b.modules())
    h_last = run.outputs[blocks[-1]][0]
    head_in = run.inputs.get(head)
    final = None
    for mod in run.order:
        x = run.inputs.get(mod)
        if mod in inside or mod is head or not isinstance(x, torch.Tensor) or not isinstance(head_in, torch.Tensor):
            continue
        if (
            x.shape == h_last.shape
            and torch.equal(x, h_last)
            and run.outputs[mod][0].shape == head_in.shape
            and torch.equal(run.outputs[mod][0], head_in)
        ):
            final = names[mod]
            break
    if final is None:
        raise refuse("no final norm maps the last block's output to the unembedding's input")

    per_block = []  # per block: every (depth, attn path, attn returns tuple, mlp path) that adds up
    for l, block in enumerate(blocks):
        h_in, h_out = run.inputs[block], run.outputs[block][0]
        if not isinstance(h_in, torch.Tensor) or h_in.shape != h_out.shape:
            raise refuse(f"block {l} does not map a residual [B, T, d] to one of the same shape")
        prefix = names[block] + "."
        own = set(block.modules())
        cands = [
            m
            for m in run.order
            if m in own and m is not block and run.calls.get(m) == 1 and run.outputs[m][0].shape == h_in.shape
        ]
        delta, scale = h_out - h_in, max(1.0, float(h_out.abs().max()))
        pairs = []
        for i, ma in enumerate(cands):
            for mm in cands[i + 1 :]:
                if run.outputs[mm][1]:  # the measurements read m_l as the MLP module's whole output
                    continue
                if _close(run.outputs[ma][0] + run.outputs[mm][0], delta, scale):
                    pa, pm = names[ma][len(prefix) :], names[mm][len(prefix) :]
                    pairs.append((pa.count(".") + pm.count("."), pa, run.outputs[ma][1], pm))
        if not pairs:
            raise refuse(
                f"in block {l} no two sublayer outputs add up to h_(l+1) - h_l (the residual is not h + a + m)"
            )
        per_block.append(sorted(pairs))

    errors = []
    for as_tuple in (True, False):  # one kind of attention output for the whole model
        chosen = [next((p for p in pairs if p[2] == as_tuple), None) for pairs in per_block]
        if None in chosen:
            continue
        attn = "|".join(dict.fromkeys(p[1] for p in chosen))
        mlp = "|".join(dict.fromkeys(p[3] for p in chosen))
        adapter = Adapter(
            family,
            (family,),
            layers=layers_path,
            attn=attn,
            mlp=mlp,
            final_norm=final,
            unembed=names[head],
            embed=embed,
            attn_is_tuple=as_tuple,
            parallel_residual=_is_parallel(model, blocks[0], attn, mlp, as_tuple, ids),
            notes="derived from the module tree; identity and logit parity confirmed on a tiny random instance",
        )
        try:
            confirm(adapter, model, ids)
            return adapter
        except UnsupportedArchitecture as err:
            errors.append(str(err))
    raise refuse(
        errors[0].split(": ", 1)[-1].rstrip(".")
        if errors
        else "its blocks' attention reads disagree in kind (tensor vs tuple)"
    )


@torch.no_grad()
def _is_parallel(model, block, attn: str, mlp: str, as_tuple: bool, ids) -> bool:
    """Does m_l ignore a_l? Add noise to block 0's attention write and see whether its MLP write moves."""
    a_mod, m_mod = Adapter.module(None, block, attn), Adapter.module(None, block, mlp)
    got = []

    def bump(mod, args, out):
        if as_tuple:
            return (out[0] + torch.randn_like(out[0]),) + tuple(out[1:])
        return out + torch.randn_like(out)

    def keep(mod, args, out):
        got.append(_first(out).clone())

    hk = m_mod.register_forward_hook(keep)
    try:
        model(input_ids=ids, use_cache=False)
        hb = a_mod.register_forward_hook(bump)
        try:
            model(input_ids=ids, use_cache=False)
        finally:
            hb.remove()
    finally:
        hk.remove()
    return bool(torch.equal(got[0], got[1]))


@torch.no_grad()
def confirm(adapter: Adapter, model, ids) -> dict:
    """Check `adapter` on a plain transformers model: at every block the read a_l and m_l satisfy
    h_(l+1) = h_l + a_l + m_l to `identity_rtol(dtype)` of max |h_(l+1)| (`identity_error`: in the block's
    own order of addition), neither is zero, and decoding the last
    residual (final norm, unembedding, soft-capping) gives the model's own logits. Returns
    {'identity': worst relative error over blocks, 'logits': worst relative logit difference};
    raises `UnsupportedArchitecture` naming the first block (or the decode) that fails."""
    blocks = adapter.layer_modules(model)
    seen: dict = {}

    def keep(key, value):
        seen.setdefault(key, value)  # the first call only; returns None so no hook replaces anything

    handles = []
    for l, block in enumerate(blocks):
        handles += [
            block.register_forward_pre_hook(
                lambda m, a, k, l=l: keep(("h", l), a[0] if a else k["hidden_states"]), with_kwargs=True
            ),
            block.register_forward_hook(lambda m, a, o, l=l: keep(("out", l), _first(o))),
            adapter.module(block, adapter.attn).register_forward_hook(
                lambda m, a, o, l=l: keep(("a", l), o[0] if adapter.attn_is_tuple else o)
            ),
            adapter.module(block, adapter.mlp).register_forward_hook(
                lambda m, a, o, l=l: keep(("m", l), o)
            ),  # a tensor, not a tuple
        ]
    try:
        logits = model(input_ids=ids, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    rtol = identity_rtol(logits.dtype)
    worst = 0.0
    for l in range(len(blocks)):
        h, a, m, out = (seen.get((k, l)) for k in ("h", "a", "m", "out"))
        if any(not isinstance(x, torch.Tensor) or x.shape != out.shape for x in (h, a, m)):
            raise UnsupportedArchitecture(
                f"'{adapter.family}': block {l}: the attention or MLP read is not a residual-shaped tensor (the measurements read the MLP module's output as it is)."
            )
        err = identity_error(h, a, m, out)
        worst = max(worst, err)
        if err > rtol:
            raise UnsupportedArchitecture(
                f"'{adapter.family}': block {l}: h + a + m differs from the block's output by {err:.2g} of its scale (the read points are not the writes)."
            )
        if float(a.abs().max()) == 0 or float(m.abs().max()) == 0:
            raise UnsupportedArchitecture(
                f"'{adapter.family}': block {l}: the attention or MLP read is identically zero."
            )
    h_last = seen[("out", len(blocks) - 1)]
    z = adapter.module(model, adapter.unembed)(adapter.module(model, adapter.final_norm)(h_last))
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:  # in the model's dtype and order, as the model soft-caps (Gemma 2 in bf16 caps in bf16)
        z = torch.tanh(z / cap) * cap
    z, logits = z.float(), logits.float()
    logit_err = (
        float((z - logits).abs().max()) / max(1.0, float(logits.abs().max()))
        if z.shape == logits.shape
        else float("inf")
    )
    if logit_err > rtol:
        raise UnsupportedArchitecture(
            f"'{adapter.family}': decoding the last residual (final norm, unembedding) does not give the model's logits "
            f"(they are rescaled or changed after the unembedding), so the logit lens would not read the model's own output."
        )
    return {"identity": worst, "logits": logit_err}


def family_status(model_type: str) -> dict:
    """{'family', 'status' ('supported' | 'refused'), 'how' (hand-written | derived | why refused),
    'attn', 'mlp', 'parallel'} for one transformers model type, judged on the default config of its
    class: a hand-written entry, a refusal of `REFUSED`, or the derivation on a tiny random instance."""
    from transformers import CONFIG_MAPPING

    row = {"family": model_type, "status": "refused", "how": "", "attn": "", "mlp": "", "parallel": ""}
    try:
        config = CONFIG_MAPPING[model_type]()
        adapter = adapter_for(config)
    except UnsupportedArchitecture as err:
        return row | {"how": str(err).split(": ", 1)[-1].rstrip(".")}
    except Exception as err:  # a config class that cannot be built with its defaults
        return row | {"how": f"its default config cannot be built ({type(err).__name__})"}
    hand = any(model_type in a.model_types for a in ADAPTERS)
    return row | {
        "status": "supported",
        "how": "hand-written" if hand else "derived",
        "attn": adapter.attn,
        "mlp": adapter.mlp,
        "parallel": "yes" if adapter.parallel_residual else "",
    }


def causal_lm_types() -> list[str]:
    """Every model type transformers can build as a causal LM (its `AutoModelForCausalLM` list)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def family_table(model_types=None) -> list[dict]:
    """`family_status` of every causal-LM model type of the installed transformers (or of `model_types`)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return [family_status(t) for t in (model_types or causal_lm_types())]
    finally:
        hf_logging.set_verbosity(verbosity)


def family_table_markdown(rows: list[dict]) -> str:
    """The family table as Markdown: supported families first (with their read points), then the refused."""
    import transformers

    sup = [r for r in rows if r["status"] == "supported"]
    ref = [r for r in rows if r["status"] != "supported"]
    out = [
        f"{len(sup)} of the {len(rows)} causal-LM model types of transformers {transformers.__version__} are supported; "
        f"{len(ref)} are refused.",
        "",
        "| family | adapter | a_l read at | m_l read at | parallel residual |",
        "| --- | --- | --- | --- | --- |",
    ]
    cell = lambda path: "`" + path.replace("|", "\\|") + "`"  # noqa: E731  (a '|' of alternatives inside a table cell)
    out += [f"| {r['family']} | {r['how']} | {cell(r['attn'])} | {cell(r['mlp'])} | {r['parallel']} |" for r in sup]
    out += ["", "| refused family | why |", "| --- | --- |"]
    out += [f"| {r['family']} | {r['how'].replace('|', '/')} |" for r in ref]
    return "\n".join(out)
