"""Tiny random-weight models of every supported family, built from configs in a second (tests, demos).

The same helpers serve the test suite and `--model tiny:<family>` runs of the notebooks, so a
notebook can be executed end to end without a trained model.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;?!+-*/=()'\"\n"


def char_tokenizer(chars: str = CHARS, add_bos: bool = True):
    """A character-level fast tokenizer (one token per character) with <pad>, <bos>, <eos>, <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
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


def tiny_config(family: str, n_layers: int = 4, d_model: int = 64, vocab_size: int = 96, **overrides):
    """A transformers config of `family` with random-weight-friendly tiny sizes."""
    import transformers as tf

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
        kw = dict(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers, num_attention_heads=heads, vocab_size=vocab_size)
    else:
        raise ValueError(f"no tiny config for '{family}'")
    kw.update(overrides)
    return cls(**kw)


def tiny_model(family: str = "llama", seed: int = 0, **kw):
    """A random-weight causal LM of `family` in float32, eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(family, **kw)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    # Random init leaves norms at 1 and many biases at 0; perturb so every parameter matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def save_tiny(folder: str | Path, family: str = "llama", seed: int = 0, **kw) -> Path:
    """Save a tiny random model and the character tokenizer to a folder `load_model` can read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_model(family, seed=seed, vocab_size=len(char_tokenizer()), **kw).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    (folder / "effdepth.json").write_text('{"kind": "tiny random-weight test model", "family": "%s"}' % family)
    return folder
