"""Tiny random-weight models of every supported family, built from configs in a second (tests, demos).

The same helpers serve the test suite and `--model tiny:<family>` runs of the notebooks, so a
notebook can be executed end to end without a trained model.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;?!+-*/=()'\"\n"


def char_tokenizer(chars: str = CHARS, add_bos: bool = True):
    """A character-level fast tokenizer (one token per character) with <pad>, <bos>, <eos>, <unk>."""
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + list(dict.fromkeys(chars)))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    if add_bos:
        tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


_HAND_TINY = ("llama", "mistral", "qwen2", "qwen3", "olmo2", "gemma2", "gemma3", "gpt2", "gpt_neox", "bert")


def tiny_config(family: str, n_layers: int = 4, d_model: int = 64, vocab_size: int = 96, **overrides):
    """A transformers config of `family` with random-weight-friendly tiny sizes.

    `family` is an adapter family ('gemma3' is Gemma 3's text model) or any transformers `model_type`;
    the families without a hand-written entry here get `shrink_config` of their config class's defaults."""
    import transformers as tf

    if family not in _HAND_TINY:
        from transformers import CONFIG_MAPPING

        if family not in CONFIG_MAPPING:
            raise ValueError(f"no tiny config for '{family}': not a transformers model_type")
        return shrink_config(
            CONFIG_MAPPING[family](), n_layers=n_layers, d_model=d_model, vocab_size=vocab_size, **overrides
        )
    heads = max(2, d_model // 16)
    common = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family in ("llama", "mistral", "qwen2", "qwen3", "olmo2", "gemma2", "gemma3"):
        cls = {
            "llama": tf.LlamaConfig,
            "mistral": tf.MistralConfig,
            "qwen2": tf.Qwen2Config,
            "qwen3": tf.Qwen3Config,
            "olmo2": tf.Olmo2Config,
            "gemma2": tf.Gemma2Config,
            "gemma3": tf.Gemma3TextConfig,
        }[family]
        kw = dict(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            max_position_embeddings=512,
            **common,
        )
        if family in ("gemma2", "gemma3", "qwen3"):
            kw["head_dim"] = d_model // heads
        if family in ("mistral", "qwen2", "qwen3", "gemma2", "gemma3"):
            kw["sliding_window"] = None if family in ("mistral", "qwen2", "qwen3") else 512
    elif family == "gpt2":
        cls = tf.GPT2Config
        kw = dict(n_embd=d_model, n_layer=n_layers, n_head=heads, n_positions=512, **common)
    elif family == "gpt_neox":
        cls = tf.GPTNeoXConfig
        kw = dict(
            hidden_size=d_model,
            intermediate_size=4 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=heads,
            max_position_embeddings=512,
            use_parallel_residual=True,
            **common,
        )
    elif family == "bert":
        cls = tf.BertConfig
        kw = dict(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=heads,
            vocab_size=vocab_size,
        )
    else:
        raise ValueError(f"no tiny config for '{family}'")
    kw.update(overrides)
    return cls(**kw)


# Sizes a config may name (under its own or an `attribute_map` name), set to tiny values by `shrink_config`.
def _tiny_sizes(n_layers: int, d_model: int, vocab_size: int) -> dict:
    heads = 4
    return dict(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        head_dim=d_model // heads,
        max_position_embeddings=512,
        n_positions=512,
        n_ctx=512,
        n_inner=2 * d_model,
        rotary_dim=8,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
        expert_intermediate_size=32,
        ffn_hidden_size=2 * d_model,
        expert_ffn_hidden_size=32,
        intermediate_size_mlp=2 * d_model,
        num_experts=4,
        num_local_experts=4,
        n_routed_experts=4,
        moe_num_experts=4,
        num_experts_per_tok=2,
        moe_topk=2,
        top_k=2,
        n_shared_experts=1,
        num_shared_experts=1,
        zero_expert_num=2,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        kv_lora_rank=16,
        q_lora_rank=32,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        qk_head_dim=16,
        v_head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        vocab_size_per_layer_input=vocab_size,
        hidden_size_per_layer_input=8,
        attn_layer_period=2,
        attn_layer_offset=1,
        expert_layer_period=2,
        expert_layer_offset=1,
        attn_layer_indices=[1],
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        is_decoder=True,
    )


def shrink_config(config, n_layers: int = 2, d_model: int = 64, vocab_size: int = 96, **overrides):
    """A tiny config of the same class as `config`, keeping every architectural switch (norm placement,
    parallel residual, layer kinds, multipliers) and shrinking the sizes: hidden size `d_model`, 4 heads,
    tiny experts and low-rank projections, `vocab_size`, and `n_layers` blocks — more when the config's
    `layer_types` has more kinds, so that every kind of block appears once."""

    cls = type(config)
    fields = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    if dataclasses.is_dataclass(cls):
        fields |= {f.name for f in dataclasses.fields(cls)}
    props = {k for k in dir(cls) if isinstance(getattr(cls, k, None), property)}
    alias = dict(getattr(cls, "attribute_map", {}) or {})
    kw = {k: v for k, v in config.to_dict().items() if k in fields and k not in props}
    for key, value in _tiny_sizes(n_layers, d_model, vocab_size).items():
        key = alias.get(key, key)
        if key in fields and key not in props and (key in kw or hasattr(config, key)):
            kw[key] = value
    if "word_embed_proj_dim" in fields and "word_embed_proj_dim" in kw:  # OPT: embeddings projected in and out
        hidden = getattr(config, "hidden_size", None)  # only when the original differs from the width (a switch kept)
        kw["word_embed_proj_dim"] = d_model if config.word_embed_proj_dim == hidden else d_model // 2
    n_orig = getattr(config, "num_hidden_layers", None)
    kinds = getattr(config, "layer_types", None)
    keep = list(range(n_layers))
    if kinds and "layer_types" in fields and "layer_types" not in props:
        first = list({k: i for i, k in reversed(list(enumerate(kinds)))}.values())[::-1]  # first block of each kind
        keep = sorted(first + [i for i in range(len(kinds)) if i not in first][: max(0, n_layers - len(first))])
        kw[alias.get("num_hidden_layers", "num_hidden_layers")] = len(keep)
    if n_orig:  # every per-block list (layer_types, mlp_layer_types, …) keeps the chosen blocks
        for key, value in list(kw.items()):
            if isinstance(value, list) and len(value) == n_orig and n_orig > 1 and key not in props:
                kw[key] = [value[i] for i in keep]
    for key in ("sub_configs",):
        kw.pop(key, None)
    kw.update(overrides)
    return cls(**kw)


def tiny_model(family: str = "llama", seed: int = 0, **kw):
    """A random-weight causal LM of `family` in float32, eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(family, **kw)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    return perturb(model).eval()


def perturb(model, scale: float = 0.02):
    """Add N(0, scale²) noise to every parameter in place: random init leaves norms at 1 and many biases
    at 0, and a read point that only differs by such a parameter must not pass by accident."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def save_tiny(folder: str | Path, family: str = "llama", seed: int = 0, **kw) -> Path:
    """Save a tiny random model and the character tokenizer to a folder `load_model` can read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_model(family, seed=seed, vocab_size=len(char_tokenizer()), **kw).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    (folder / "effdepth.json").write_text(f'{{"kind": "tiny random-weight test model", "family": "{family}"}}')
    return folder
