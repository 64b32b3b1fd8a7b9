"""§3.5 / App. D.5: is fixed-depth computation caused by the objective or by the architecture?

A 2 × 2 grid of small models trained here from scratch on DeepMind Mathematics arithmetic
(``arithmetic__*`` modules, ``"Q: {question} A: {answer}"``, packed into windows, never split):

* architecture: a standard pre-norm Transformer (``LlamaForCausalLM``) or MoEUT
  (:mod:`effdepth.access.moeut`, shared layers repeated in groups, σ-MoE and SwitchHead), at matched
  parameter count;
* objective: next-token loss on every token (``"all"``, like an LLM) or on the answer tokens only
  (``"answer"``).

Every cell is trained for several seeds (the seed sets the initialisation and the order of the
training examples; both architectures of a seed see the same batches). Each model is evaluated by
teacher-forced greedy exact match per module on the generator's ``interpolate`` and ``extrapolate``
splits, and its depth use is measured with residual erasure (methods page §4, the erasing vector
the mean residual of one counterfactual example) and the depth score (methods page §4); the whole
design is the methods page §6.

The fine-tuning analogue (App. D.5) pre-trains a Transformer of the same size on the multi-hop
corpus only, then fine-tunes it on the arithmetic data with each objective.

The stages, one module each:

    grid        GridSpec (sizes, steps, data; .at_scale(k) for a bigger GPU run), PRESETS, make_spec, grid_dir
    problems    the training pool and evaluation sets (effdepth.data.arithmetic's one sampler), cached
    models      the two architectures at matched size, load_folder, the random-init controls
    train       batches, train_cell / train_grid / finetune_runs (effdepth.training's one loop), Grid
    evaluate    exact-match accuracy, of the controls, of the most frequent answer
    depth_use   depth score and erasure depth of every model and control

Public interface::

    train_grid(spec, seeds, device)       -> Grid (trains what is missing, reads the rest from the cache)
    Grid.accuracy_frame() / .summary()    per-model accuracies / mean ± spread over seeds
    Grid.load(arch, objective, seed)      -> effdepth Model (nnsight-wrapped, like load_model)
    finetune_runs(spec, seed, device)     -> {"pretrained", "all", "answer"} folders
    erasure_depth(result)                 scalar summary of an erasure heatmap

Models are cached in ``effdepth.zoo.cache_dir() / "grid" / <spec key> / <arch>-<objective>-s<seed>``
(written to ``….partial`` with checkpoints first, so an interrupted run resumes).
"""

from __future__ import annotations

from dataclasses import replace

from effdepth.objective.depth_use import (
    choose_example,
    control_depth_use,
    correct_examples,
    depth_examples,
    depth_use,
    erasure,
    erasure_depth,
    measure_depth,
)
from effdepth.objective.evaluate import accuracy, baseline_accuracy, control_accuracy, exact_match
from effdepth.objective.grid import (
    ARCH_LABEL,
    ARCHS,
    DEFAULT_MODULES,
    EXTRAPOLATE_OF,
    HEADLINE,
    MULTI_STEP,
    OBJECTIVE_LABEL,
    OBJECTIVES,
    PRESETS,
    SPLITS,
    GridSpec,
    cell_folders,
    grid_dir,
    make_spec,
    run_name,
)
from effdepth.objective.models import (
    build_model,
    control_models,
    count_params,
    load_folder,
    moeut_config,
    transformer_config,
    transformer_params,
)
from effdepth.objective.problems import eval_sets, n_pool, problems, spread, training_pool
from effdepth.objective.train import (
    Grid,
    arithmetic_batches,
    default_workers,
    finetune,
    finetune_runs,
    multihop_batches,
    pretrain,
    train_cell,
    train_grid,
    train_run,
)
from effdepth.training import DeviceBatches

__all__ = [
    "ARCHS",
    "OBJECTIVES",
    "ARCH_LABEL",
    "OBJECTIVE_LABEL",
    "SPLITS",
    "DEFAULT_MODULES",
    "EXTRAPOLATE_OF",
    "HEADLINE",
    "MULTI_STEP",
    "PRESETS",
    "GridSpec",
    "make_spec",
    "grid_dir",
    "run_name",
    "cell_folders",
    "problems",
    "training_pool",
    "eval_sets",
    "n_pool",
    "spread",
    "transformer_config",
    "transformer_params",
    "moeut_config",
    "build_model",
    "count_params",
    "load_folder",
    "control_models",
    "arithmetic_batches",
    "multihop_batches",
    "DeviceBatches",
    "train_run",
    "train_cell",
    "pretrain",
    "finetune",
    "Grid",
    "train_grid",
    "finetune_runs",
    "default_workers",
    "exact_match",
    "accuracy",
    "control_accuracy",
    "baseline_accuracy",
    "correct_examples",
    "choose_example",
    "erasure",
    "erasure_depth",
    "depth_examples",
    "measure_depth",
    "depth_use",
    "control_depth_use",
    "replace",
]
