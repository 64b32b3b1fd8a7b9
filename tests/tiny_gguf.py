"""Write a tiny random Llama as a GGUF file with the `gguf` package's writer (as llama.cpp's
convert_hf_to_gguf.py lays it out), so GGUF loading is tested without a 93 MB download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from effdepth.testing import CHARS, tiny_model

# Byte-level BPE spells a space as 'Ġ' and a newline as 'Ċ' (GPT-2's byte-to-unicode table).
_BYTE_LEVEL = {" ": "Ġ", "\n": "Ċ"}
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (interleaved rotary halves); transformers' reader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: str | Path, quant: str = "Q4_1", n_layers: int = 2, d_model: int = 64, seed: int = 0) -> Path:
    """A random-weight Llama (effdepth.testing.tiny_model) with a character-level byte-BPE vocabulary,
    its 2-D weights stored as `quant` (norms in F32). Returns the path."""
    import gguf

    tokens = SPECIALS + [_BYTE_LEVEL.get(c, c) for c in dict.fromkeys(CHARS)]
    hf = tiny_model(
        "llama", seed=seed, n_layers=n_layers, d_model=d_model, vocab_size=len(tokens), tie_word_embeddings=False
    )
    c = hf.config
    qtype = gguf.GGMLQuantizationType[quant]
    path = Path(path)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_file_type(gguf.LlamaFileType[f"MOSTLY_{quant}"] if quant != "F32" else gguf.LlamaFileType.ALL_F32)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]) if getattr(c, "rope_parameters", None) else 10000.0)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(
        [gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS))
    )
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_add_bos_token(False)

    sd = {k: v.detach().float().numpy() for k, v in hf.state_dict().items()}
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }

    def add(name, arr):
        if arr.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, arr.astype(np.float32))

    add("token_embd.weight", sd["model.embed_tokens.weight"])
    for l in range(c.num_hidden_layers):
        for hf_name, g_name in names.items():
            arr = sd[f"model.layers.{l}.{hf_name}.weight"]
            if g_name == "attn_q":
                arr = _permute(arr, c.num_attention_heads)
            elif g_name == "attn_k":
                arr = _permute(arr, c.num_key_value_heads)
            add(f"blk.{l}.{g_name}.weight", arr)
    add("output_norm.weight", sd["model.norm.weight"])
    add("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
