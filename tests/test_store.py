"""Result store: keyed by what made a result, atomic, damaged files detected and recomputed."""

import json
import os

import numpy as np
import pytest

from effdepth.store import DamagedEntry, Store


def test_round_trip_and_key_ingredients(tmp_path):
    store = Store(tmp_path)
    ident = {"model": "m", "revision": "r1", "dtype": "float32"}
    key = store.key("x", ident, {"a": 1}, ["p1", "p2"])
    store.save(key, {"v": np.arange(3.0)}, {"note": "hi"})
    arrays, meta = store.load(key)
    np.testing.assert_array_equal(arrays["v"], np.arange(3.0))
    assert meta == {"note": "hi"}
    # every ingredient changes the key
    assert store.key("x", {**ident, "revision": "r2"}, {"a": 1}, ["p1", "p2"]) != key
    assert store.key("x", ident, {"a": 2}, ["p1", "p2"]) != key
    assert store.key("x", ident, {"a": 1}, ["p1"]) != key
    assert store.key("y", ident, {"a": 1}, ["p1", "p2"]) != key
    assert store.key("x", ident, {"a": 1}, ["p1", "p2"]) == key


def test_damaged_entry_is_detected_and_recomputed(tmp_path):
    store = Store(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"v": np.ones(4)}, {}

    store.get_or_compute("k/1", compute)
    npz = tmp_path / "k" / "1.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte in the middle
    npz.write_bytes(bytes(data))
    with pytest.raises(DamagedEntry):
        store.load("k/1")
    with pytest.warns(UserWarning, match="Damaged cache entry"):
        arrays, _ = store.get_or_compute("k/1", compute)
    assert len(calls) == 2
    np.testing.assert_array_equal(arrays["v"], np.ones(4))
    assert (tmp_path / "k" / "1.npz.damaged").exists()  # kept aside for inspection, not deleted
    assert store.load("k/1") is not None


def test_truncated_file_is_damaged(tmp_path):
    store = Store(tmp_path)
    store.save("k/2", {"v": np.zeros(1000)})
    npz = tmp_path / "k" / "2.npz"
    record = json.loads((tmp_path / "k" / "2.json").read_text())
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(DamagedEntry):
        store.load("k/2")
    assert record["sha256"]


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    store = Store(tmp_path)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        store.save("k/3", {"v": np.zeros(3)})
    monkeypatch.undo()
    assert store.load("k/3") is None
    assert not [p for p in (tmp_path / "k").iterdir() if p.suffix == ".tmp"]


def test_map_resumes_after_interruption(tmp_path):
    store = Store(tmp_path)
    seen = []

    def compute(item):
        if item == 3 and not seen.count("failed"):
            seen.append("failed")
            raise RuntimeError("killed")
        seen.append(item)
        return {"sq": np.array(item * item)}

    with pytest.raises(RuntimeError):
        store.map("m", [1, 2, 3, 4], compute)
    out = store.map("m", [1, 2, 3, 4], compute)
    assert [int(o["sq"]) for o in out] == [1, 4, 9, 16]
    assert seen == [1, 2, "failed", 3, 4]  # 1 and 2 were not recomputed


def test_contributions_resume_from_cached_items(tiny_models, monkeypatch):
    """A run that dies after some batches recomputes only the rest."""
    import effdepth.residual_contributions as rc

    model = tiny_models["llama"]
    prompts = ["aa bb", "ccc dd", "e f g h", "ijk lmn op"]
    real = rc.gram_local
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real(*a, **k)

    monkeypatch.setattr(rc, "gram_local", flaky)
    with pytest.raises(RuntimeError):
        rc.contributions(model, prompts, batch_size=1)
    calls.clear()
    monkeypatch.setattr(rc, "gram_local", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = rc.contributions(model, prompts, batch_size=1).to_frame()
    assert len(calls) == 3  # the first batch came from the cache
    monkeypatch.setenv("EFFDEPTH_NO_CACHE", "1")
    import effdepth.store as st

    monkeypatch.setattr(st, "_default", None)
    fresh = rc.contributions(model, prompts, batch_size=1).to_frame()
    np.testing.assert_allclose(resumed.to_numpy(), fresh.to_numpy(), rtol=1e-6)
