"""The one check a prompt passes where it becomes token ids (`Model.encode`), for every measurement.

A prompt is refused, never cut, when it is not a string, is empty (no text, or no tokens: a
tokenizer without BOS turns '' into nothing), or is longer than the model's context (`n_positions`
or `max_position_embeddings`, whichever its config has): past it GPT-2 has no position embedding
(an IndexError deep in the model) and a RoPE model runs on positions it never saw, without a word.
Refusing instead of truncating keeps every measured prompt the prompt that was asked for (a cut
teacher-forced example would lose its answer). Measurements encode all their prompts before the
first forward pass, so a bad prompt stops a run before any work, naming its index.
"""

from __future__ import annotations

from effdepth.errors import PromptError

CONTEXT_FIELDS = ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len")


def context_limit(config) -> tuple[int, str] | tuple[None, None]:
    """(the most positions the model takes, the config field that says so), or (None, None) when
    the config names none (a multimodal config is read through its `text_config`)."""
    for cfg in (config, getattr(config, "text_config", None)):
        for name in CONTEXT_FIELDS:
            value = getattr(cfg, name, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value, name
    return None, None


def _who(index) -> str:
    if index is None:
        return "The prompt"
    return f"prompts[{index}]" if isinstance(index, int) else str(index)


def check_text(text, index=None) -> None:
    """Refuse a prompt that is not a non-empty string (`index`: its place in the caller's list, or a label)."""
    if not isinstance(text, str):
        raise PromptError(f"{_who(index)} is {type(text).__name__}, not a string: pass the prompt's text.")
    if not text:
        raise PromptError(
            f"{_who(index)} is empty (''): a measurement needs at least one token of text; remove it or give it text."
        )


def check_length(model, n_tokens: int, index=None, what: str = "") -> None:
    """Refuse `n_tokens` ids that are none, or more than `model`'s context (`what`: e.g. ' (prompt + answer)')."""
    if n_tokens == 0:
        raise PromptError(
            f"{_who(index)}{what} has no tokens (this tokenizer adds no BOS): give it text the tokenizer keeps."
        )
    limit, field = context_limit(model.config)
    if limit is not None and n_tokens > limit:
        raise PromptError(
            f"{_who(index)}{what} has {n_tokens} tokens, more than {model.spec}'s context of {limit} positions "
            f"({field} in its config): pass shorter prompts (e.g. fewer few-shot examples or a shorter document), "
            f"or cut it to at most {limit} tokens yourself."
        )
