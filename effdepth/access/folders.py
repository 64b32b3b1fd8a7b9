"""A local model folder: is it loadable as it is (config, weights, tokenizer), and its revision (a
fingerprint of its files, so a result cached for one folder's weights is never served for another's)."""

from __future__ import annotations

import hashlib
import json
import re
import time
import zipfile
from pathlib import Path

from effdepth.access.adapters import adapter_for
from effdepth.errors import BadModelFolder
from effdepth.store import atomic_write, cache_root, caching_enabled

_REVISION_SUFFIXES = {".json", ".safetensors", ".bin", ".model", ".txt"}


def folder_revision(path: Path) -> str:
    """A content fingerprint of a local model folder: the full SHA-256 of every config, weight and
    tokenizer file in it, so any change to any byte of the weights gives a new revision (and new cache
    keys). Big files are hashed once and remembered (`file_sha256`), so a second load costs nothing."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in _REVISION_SUFFIXES and f.is_file():
            h.update(f.name.encode() + b"\0" + file_sha256(f).encode() + b"\0")
    return h.hexdigest()[:16]


_RACY_NS = 2_000_000_000  # a file changed this recently may change again within one timestamp tick


def file_sha256(f: Path, remember_above: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes. For files over `remember_above` bytes the digest is remembered in a
    small sidecar under `<cache>/file-hashes/`, keyed by (absolute path, size, mtime_ns, ctime_ns, inode):
    any rewrite changes mtime/ctime, so the digest is recomputed. As in git's "racy clean" rule, a digest is
    only remembered once the file is older than the timestamp granularity can blur (2 s), so a file
    rewritten within the same clock tick is never read as unchanged. An unwritable cache only costs time;
    EFFDEPTH_NO_CACHE=1 hashes every time and writes nothing."""
    st = f.stat()
    if st.st_size <= remember_above or not caching_enabled():
        return stream_sha256(f)
    stamp = [str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    sidecar = cache_root() / "file-hashes" / (hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32] + ".json")
    try:
        record = json.loads(sidecar.read_text())
        if record.get("stamp") == stamp and re.fullmatch(r"[0-9a-f]{64}", record.get("sha256", "")):
            return record["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    started = time.time_ns()
    sha = stream_sha256(f)
    if max(st.st_mtime_ns, st.st_ctime_ns) < started - _RACY_NS:
        try:
            atomic_write(sidecar, json.dumps({"stamp": stamp, "sha256": sha}).encode())
        except OSError:
            pass
    return sha


def stream_sha256(f: Path) -> str:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        while chunk := fh.read(1 << 23):
            h.update(chunk)
    return h.hexdigest()


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def check_folder(path: Path):
    """Validate a local model folder before anything heavy reads it, and return its transformers config.

    Each problem is one `BadModelFolder` line naming the file: config.json missing or not a JSON object,
    a config that asks to run the folder's own code (`auto_map` for a type transformers does not know:
    effdepth never runs code from a model folder), an unsupported architecture (`UnsupportedArchitecture`,
    checked before the weights so a config alone is enough to be refused), no weight files, a weight file
    that is truncated or damaged (safetensors header against the file size; a zip-format .bin that does not
    open), a shard named in an index that is missing, and no tokenizer files."""
    from transformers import CONFIG_MAPPING, AutoConfig

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise BadModelFolder(
            f"{path} has no config.json: expected a transformers model folder (config.json, weights, tokenizer files), e.g. one written by save_pretrained."
        )
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise BadModelFolder(
            f"{cfg_file} is not valid JSON ({err}); expected the model config written by save_pretrained."
        ) from None
    if not isinstance(raw, dict):
        raise BadModelFolder(
            f"{cfg_file} is not a transformers config: expected a JSON object (with a 'model_type'), got {type(raw).__name__}."
        )
    if "auto_map" in raw and raw.get("model_type") not in CONFIG_MAPPING:
        raise BadModelFolder(
            f"{cfg_file} asks to run the folder's own Python code (auto_map, model_type {raw.get('model_type')!r}); "
            f"effdepth never runs code from a model folder (trust_remote_code=False): use a model type transformers implements."
        )
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (ValueError, OSError, TypeError) as err:
        raise BadModelFolder(
            f"{cfg_file} cannot be read as a transformers config: {' '.join(str(err).split())}"
        ) from None
    adapter_for(config)  # refuse an unsupported architecture before complaining about its weights

    weights = [path / n for n in _WEIGHTS if (path / n).is_file()]
    if not weights:
        raise BadModelFolder(
            f"{path} has no weights: expected {' or '.join(_WEIGHTS)} (as written by save_pretrained)."
        )
    for f in weights:
        if f.name.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads(f.read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, OSError, KeyError, TypeError, AttributeError) as err:
                raise BadModelFolder(
                    f"{f} is not a valid weight index ({err}); expected JSON with a 'weight_map' of tensor -> shard file."
                ) from None
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise BadModelFolder(f"{f} names shard(s) missing from {path}: {', '.join(missing)}.")
            for s in shards:
                check_weight_file(path / s)
        else:
            check_weight_file(f)

    if not any((path / n).is_file() for n in _TOKENIZER_FILES) and not list(path.glob("*.tiktoken")):
        raise BadModelFolder(
            f"{path} has no tokenizer: expected {', '.join(_TOKENIZER_FILES[:2])} or another tokenizer vocabulary file "
            f"(save one with tokenizer.save_pretrained('{path}'))."
        )
    return config


def check_weight_file(f: Path) -> None:
    """Refuse a truncated or damaged weight file with one line naming it (reads only its header)."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        if f.suffix == ".safetensors":
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            try:
                if not 0 < n <= size - 8:
                    raise ValueError("header length out of range")
                header = json.loads(fh.read(n))
                end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
                raise BadModelFolder(
                    f"{f} is not a readable safetensors file ({err}); it is damaged or not fully written: save or download it again."
                ) from None
            if 8 + n + end != size:
                raise BadModelFolder(
                    f"{f} is truncated or damaged: its header describes {8 + n + end} bytes, the file has {size}; save or download it again."
                )
    if f.suffix == ".bin" and head.startswith(b"PK") and not zipfile.is_zipfile(f):
        raise BadModelFolder(f"{f} is truncated or damaged (its zip archive does not open); save or download it again.")
