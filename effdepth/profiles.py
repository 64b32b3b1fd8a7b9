"""Named run sizes: `effdepth run --profile cpu | paper | small` (an explicit `--set` wins over a profile).

A profile is a set of `--set` values (`chapter.name` scopes a value to one chapter, a bare name applies
to every chapter that declares it), split by the kind of model where the sizes differ: `zoo` for the
project's own models (`zoo:…`, and `random:zoo:…`), `pretrained` for everything else.

- `cpu`: what `make book` runs on a 2-core CPU; the one dict to retune is `CPU` below.
- `paper`: the paper's sample sizes (the methods page): the notebooks' defaults already are, except integrated
  gradients (256 steps, methods page §4 (integrated gradients)) and §3.4's windows and SGD comparison (512-token windows, the
  authors' AdamW recipe of 10k steps at batch 64 windows, methods page §5).
- `small`: every chapter at its smallest meaningful size (2 prompts, 1 control, 1 split point, …), for
  a first end-to-end run of a new model or machine; not for conclusions.
"""

from __future__ import annotations

from effdepth.spec import ModelSpec

# `make book` on a 2-core CPU, sized where the verdicts need it: 20 prompts for contributions and the
# lens, 8 per skipping setting, 10 per level for the depth score; the random-init controls vary little
# between prompts, so 2 seeds run on the first 3-5 prompts (or examples per level).
# effdepth.calibration.BOOK_SIZES holds the same n (a test checks it), and the methods page's table gives
# each rule's simulated error rates at these n. Retune here.
CPU: dict[str, dict] = {
    "pretrained": {
        "model.n_per_level": 10,
        "contributions.n_examples": 20,
        "contributions.n_controls": 2,
        "contributions.n_control_examples": 5,
        "skipping.n_examples": 8,
        "skipping.n_examples_future": 8,
        "skipping.n_splits": 2,
        "skipping.position_examples": 1,
        "skipping.detail_examples": 1,
        "skipping.n_controls": 2,
        "skipping.n_control_examples": 3,
        "logit_lens.n_examples": 20,
        "logit_lens.n_controls": 2,
        "logit_lens.n_control_examples": 5,
        "complexity.n_per_level": 10,
        "complexity.n_control_per_level": 3,
        "complexity.ig_steps": 8,
        "complexity.n_reference": 5,
        "complexity.n_splits": 1,
        "complexity.depth_sets": ["Word problems"],
    },
    "zoo": {
        "objective.workers": 1,
        "objective.finetune": False,  # §3.5's fine-tuning analogue (App. D.5, ~5 CPU-minutes) is left out
        # at 300 steps the grid stays at the majority-answer baseline on a CPU, so §3.5 is not testable
        # here (its page says so): half the steps, and the CPU goes to SmolLM2's chapters
        "objective.steps": 150,
        "objective.n_depth_examples": 8,
    },
}

# The paper's sample sizes where the notebooks' defaults differ from them (methods page §4 (integrated gradients), §5).
PAPER: dict[str, dict] = {
    "pretrained": {
        "complexity.ig_steps": 256,
        "linear_maps.window": 512,
        "linear_maps.sgd_steps": 10000,
        "linear_maps.sgd_batch_windows": 64,
    },
}
PAPER["zoo"] = dict(PAPER["pretrained"])

# Every chapter small: a first end-to-end run (minutes for a 12-layer model on a CPU), not for conclusions.
_SMALL = {
    "n_examples": 2,
    "n_controls": 1,
    "n_control_examples": 2,
    "n_per_level": 2,
    "n_control_per_level": 2,
    "skipping.n_examples_future": 1,
    "skipping.n_splits": 1,
    "skipping.position_examples": 1,
    "skipping.detail_examples": 1,
    "skipping.n_perm": 200,
    "complexity.ig_steps": 4,
    "complexity.n_reference": 2,
    "complexity.n_splits": 1,
    "complexity.n_boot": 100,
    "linear_maps.n_windows": 16,
    "linear_maps.window": 32,
    "linear_maps.compare_sgd": False,
    "objective.seeds": [0],
    "objective.n_depth_examples": 2,
    "objective.n_erasure": 1,
    "objective.finetune": False,
    "objective.workers": 1,
}
SMALL: dict[str, dict] = {"pretrained": _SMALL, "zoo": _SMALL}

PROFILES: dict[str, dict[str, dict]] = {"cpu": CPU, "paper": PAPER, "small": SMALL}


def kind_of(model: str) -> str:
    """'zoo' for the project's own models (also their random-init twins), else 'pretrained'."""
    return "zoo" if ModelSpec.parse(model).base.is_zoo else "pretrained"


def profile_values(name: str | None, model: str) -> dict:
    """The `--set` values of profile `name` for `model` ({} for None)."""
    if not name:
        return {}
    if name not in PROFILES:
        raise ValueError(f"Unknown profile '{name}'; the profiles are: {', '.join(PROFILES)}.")
    return dict(PROFILES[name].get(kind_of(model), {}))


def _bare(key: str) -> str:
    return key.split(".", 1)[1] if "." in key else key


def with_profile(name: str | None, model: str, explicit: dict) -> dict:
    """The profile's values overridden by the explicit `--set` ones: an explicit bare `name` replaces the
    profile's `name` and every `chapter.name`; an explicit `chapter.name` replaces the profile's own."""
    values = profile_values(name, model)
    bare = {k for k in explicit if "." not in k}
    values = {k: v for k, v in values.items() if k not in explicit and _bare(k) not in bare}
    return values | dict(explicit)
