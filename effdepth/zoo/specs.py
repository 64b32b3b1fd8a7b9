"""The zoo's models: what determines each (:class:`ZooSpec`), the named models, their Llama configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from effdepth.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE
from effdepth.zoo.corpus import DataSpec


@dataclass(frozen=True)
class ZooSpec:
    """Everything that determines a zoo model (architecture, optimisation, data, seed)."""

    name: str
    n_layers: int
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 256
    steps: int = 1400  # mixture steps, after the walk curriculum (DataSpec.curriculum_steps)
    lr: float = 2e-3
    warmup: int = 50
    beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    loss_on: str = "all"
    answer_weight: float = 1.0
    seed: int = 0
    threads: int = 1  # torch threads of the curriculum (and the evaluation)
    mixture_threads: int = 1  # torch threads of the mixture phase (part of the spec: results depend on it)
    checkpoint_every: int = 100
    # The walk curriculum holds the peak lr (after warm-up) instead of decaying it: the lookup's phase
    # change comes late (walk loss ≈ 1.0 for ~700 steps, then a drop), and a cosine decay toward the
    # 1 200-step cap slowed it so much that seeds 0 and 2 ran into the cap; at the constant peak lr
    # both stopped early (920 and 860 steps, at 1 and 2 torch threads alike).
    curriculum_min_lr_ratio: float = 1.0
    # Where training left the stated skill missing (one-hop < ONE_HOP_REQUIRED on a check set of fresh
    # fact sets, not the reported evaluation set): up to skill_rounds warm restarts of the mixture,
    # skill_steps each (warm-up to the peak lr again, cosine decay), until the check passes.
    skill_rounds: int = 2
    skill_steps: int = 400
    data: DataSpec = field(default_factory=DataSpec)
    n_eval: int = 100  # evaluation questions per level / hop count

    def config(self):
        return llama_config(self.n_layers, self.d_model, self.n_heads, self.d_ff)

    def to_dict(self) -> dict:
        return asdict(self)


def llama_config(n_layers: int, d_model: int, n_heads: int, d_ff: int):
    """The zoo's Llama configuration: its character vocabulary, untied embeddings, full attention heads."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=d_model,
        intermediate_size=d_ff,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def _zoo(*specs: ZooSpec) -> dict[str, ZooSpec]:
    return {s.name: s for s in specs}


MODELS: dict[str, ZooSpec] = _zoo(
    ZooSpec("llama-2l", n_layers=2),
    ZooSpec("llama-4l", n_layers=4),
    # One torch thread throughout: one and two threads give bit-identical weights at these sizes (30
    # mixture steps compared tensor by tensor), and two threads on a machine whose other core is busy
    # (make book runs a second job beside the zoo) ran 1.8× slower than one.
    ZooSpec("llama-8l", n_layers=8),
)
DEFAULT = "llama-8l"
SHALLOW = "llama-4l"
DEEP = "llama-8l"


def spec_of(name_or_spec) -> ZooSpec:
    """The :class:`ZooSpec` of a zoo name (``"llama-8l"`` or ``"zoo:llama-8l"``) or a spec itself;
    ValueError naming the zoo's models for an unknown name."""
    if isinstance(name_or_spec, ZooSpec):
        return name_or_spec
    name = str(name_or_spec).removeprefix("zoo:")
    if name not in MODELS:
        raise ValueError(f"Unknown zoo model '{name}'. The zoo has: {', '.join(MODELS)}.")
    return MODELS[name]
