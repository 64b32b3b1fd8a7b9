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
    import effdepth.measures.contributions as rc

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


def _copy_entry(root, src: str, dst: str) -> None:
    for suffix in (".npz", ".json"):
        (root / (dst + suffix)).write_bytes((root / (src + suffix)).read_bytes())


def test_entry_copied_over_another_key_is_detected_and_recomputed(tmp_path):
    store = Store(tmp_path)
    store.get_or_compute("k/a", lambda: ({"v": np.full(3, 1.0)}, {}))
    store.get_or_compute("k/b", lambda: ({"v": np.full(3, 2.0)}, {}))
    _copy_entry(tmp_path, "k/a", "k/b")  # checksum still matches: only the recorded key tells
    with pytest.raises(DamagedEntry, match="records key 'k/a', not 'k/b'"):
        store.load("k/b")
    with pytest.warns(UserWarning, match="Damaged cache entry k/b"):
        arrays, _ = store.get_or_compute("k/b", lambda: ({"v": np.full(3, 2.0)}, {}))
    np.testing.assert_array_equal(arrays["v"], np.full(3, 2.0))
    assert (tmp_path / "k" / "b.json.damaged").exists()
    np.testing.assert_array_equal(store.load("k/b")[0]["v"], np.full(3, 2.0))
    np.testing.assert_array_equal(store.load("k/a")[0]["v"], np.full(3, 1.0))  # the source is untouched


def test_per_item_entry_copied_over_another_is_recomputed(tmp_path):
    from effdepth.store import digest

    store = Store(tmp_path)
    calls = []

    def compute(item):
        calls.append(item)
        return {"sq": np.array(item * item)}

    store.map("m", [1, 2, 3], compute)
    _copy_entry(tmp_path, f"m/{digest(1)}", f"m/{digest(3)}")
    calls.clear()
    with pytest.warns(UserWarning, match="copied from another entry"):
        out = store.map("m", [1, 2, 3], compute)
    assert [int(o["sq"]) for o in out] == [1, 4, 9] and calls == [3]  # only the overwritten item is redone


def _final_keys(store) -> set:
    return {
        json.loads(m.read_text())["key"]
        for m in store.root.rglob("*.json")
        if "items" not in m.relative_to(store.root).parts
    }


def test_final_result_copied_over_another_measurement_is_recomputed(tiny_models, tmp_path):
    """A copied final entry of a real measurement: without the key check its numbers would be the other prompts'."""
    from effdepth import contributions

    store = Store(tmp_path)
    model = tiny_models["llama"]
    a = contributions(model, ["aa bb", "ccc dd"], store=store)
    (key_a,) = _final_keys(store)
    b = contributions(model, ["e f g h", "Hi"], store=store)
    (key_b,) = _final_keys(store) - {key_a}
    _copy_entry(tmp_path, key_a, key_b)
    with pytest.warns(UserWarning, match="Damaged cache entry"):
        again = contributions(model, ["e f g h", "Hi"], store=store)
    np.testing.assert_allclose(again.to_frame().to_numpy(), b.to_frame().to_numpy(), rtol=1e-6)
    assert not np.allclose(again.to_frame().to_numpy(), a.to_frame().to_numpy())


def test_unwritable_cache_says_how_to_run_without_one(tmp_path, monkeypatch):
    from effdepth.store import CacheNotWritable

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = Store(blocker / "results")  # mkdir under a file fails, even for root
    with pytest.raises(CacheNotWritable) as err:
        store.get_or_compute("k/1", lambda: ({"v": np.ones(2)}, {}))
    msg = str(err.value)
    assert (
        "\n" not in msg
        and str(blocker / "results") in msg
        and "EFFDEPTH_NO_CACHE=1" in msg
        and "EFFDEPTH_CACHE=" in msg
    )

    import tempfile

    def read_only(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # a read-only folder, as a non-root user sees it
    with pytest.raises(CacheNotWritable, match="Permission denied"):
        Store(tmp_path / "ro").save("k/1", {"v": np.ones(2)})


def test_unwritable_default_cache_and_the_no_cache_way_out(tiny_models, tmp_path, monkeypatch):
    import effdepth.store as st
    from effdepth import contributions

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("EFFDEPTH_CACHE", str(blocker))
    monkeypatch.setattr(st, "_default", None)
    with pytest.raises(st.CacheNotWritable, match="EFFDEPTH_NO_CACHE=1"):
        contributions(tiny_models["llama"], ["aa bb", "cc"])
    monkeypatch.setenv("EFFDEPTH_NO_CACHE", "1")
    monkeypatch.setattr(st, "_default", None)
    assert contributions(tiny_models["llama"], ["aa bb", "cc"]).to_frame().shape[0] == tiny_models["llama"].n_layers
