"""The zoo: small Llama models trained here, offline, on generated data, so the book runs on a CPU.

Every zoo model is a `transformers.LlamaForCausalLM` of the same width, differing only in depth,
trained from the same seed on the same batches of the same mixture (graded sums, in-context
multi-hop questions, DeepMind arithmetic; see :mod:`effdepth.zoo.corpus`) with the same
character-level tokenizer (:mod:`effdepth.tokenizer`, adds ``<bos>``).

Public interface::

    MODELS            name -> ZooSpec
    DEFAULT, SHALLOW, DEEP
    cache_dir()       $EFFDEPTH_CACHE or the platform cache folder; models in cache_dir()/zoo/<name>/
    ensure(name)      the model's folder, trained first if missing
    train_all(names)  ensure several (default: all)
    report(name)      the model's report.json as a dict (training time, loss history, accuracies)

`ensure` also accepts a `ZooSpec` (for tests and experiments); its folder is named after the spec.

Modules: :mod:`.specs` (what a model is), :mod:`.corpus` (its data), :mod:`.cache` (where it
lives), :mod:`.train` (training one model with :mod:`effdepth.training`), :mod:`.reporting` (its
report and stated skill), :mod:`.build` (ensure / train_all / check), :mod:`.evaluate`, :mod:`.book`.
"""

from __future__ import annotations

from effdepth.tokenizer import zoo_tokenizer
from effdepth.zoo.build import check, ensure, report, train_all
from effdepth.zoo.cache import cache_dir, folder, is_trained
from effdepth.zoo.reporting import ONE_HOP_REQUIRED, compute_report, one_hop_check, skill, skill_warning
from effdepth.zoo.specs import DEEP, DEFAULT, MODELS, SHALLOW, ZooSpec, llama_config
from effdepth.zoo.train import build_model

__all__ = [
    "ZooSpec",
    "MODELS",
    "DEFAULT",
    "SHALLOW",
    "DEEP",
    "cache_dir",
    "folder",
    "is_trained",
    "ensure",
    "train_all",
    "check",
    "report",
    "build_model",
    "compute_report",
    "llama_config",
    "one_hop_check",
    "skill",
    "skill_warning",
    "ONE_HOP_REQUIRED",
    "zoo_tokenizer",
]
