"""The checkpoint/cache scheme (common.training.checkpoint): payload round trip, keys, code versions, damaged
and malicious files, atomic writes, entry names, ``cached`` and concurrent use by two processes."""

import importlib
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import REPO_ROOT
from common.training import checkpoint as ck
from common.training.checkpoint import CacheWarning, cache_entry, cache_key, cached, code_version
from tests.cache_faults import DAMAGE_KINDS, damage, write_crafted_pickle


@dataclass(frozen=True)
class Config:
    width: int = 8
    lr: float = 1e-3
    layers: tuple = (1, 2)


@pytest.fixture
def entry(tmp_path):
    return cache_entry("unit", "thing", "0123abcd", root=tmp_path)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- payloads


def test_round_trip_keeps_types_values_dtypes_and_shapes(entry):
    payload = {
        "tensor": torch.arange(6.0).view(2, 3),
        "int16": np.arange(12, dtype=np.int16).reshape(3, 4),
        "float32": np.linspace(0, 1, 5, dtype=np.float32),
        "bool": np.array([[True, False]]),
        "uint8_transposed": np.arange(6, dtype=np.uint8).reshape(2, 3).T,  # not contiguous
        "empty": np.zeros((0, 2)),
        "nested": {"list": [1, np.float64(2.5), (np.int64(3), "x")], "dict": {"deep": np.eye(2)}},
        "config": Config(width=4),
        "scalars": [np.int32(4), np.float32(0.5), np.bool_(True), np.str_("word")],
        "keys": {np.int64(7): "seven", np.str_("k"): 1},
        "plain": (None, True, 3, 1.5, "s", b"bytes"),
    }
    entry.save(payload)
    got = entry.load()
    torch.testing.assert_close(got["tensor"], payload["tensor"])
    for name in ("int16", "float32", "bool", "uint8_transposed", "empty"):
        assert isinstance(got[name], np.ndarray), name
        assert got[name].dtype == payload[name].dtype and got[name].shape == payload[name].shape, name
        np.testing.assert_array_equal(got[name], payload[name])
    assert got["nested"]["list"][:2] == [1, 2.5] and got["nested"]["list"][2] == (3, "x")
    assert isinstance(got["nested"]["list"][2], tuple)
    np.testing.assert_array_equal(got["nested"]["dict"]["deep"], np.eye(2))
    assert got["config"] == {"width": 4, "lr": 1e-3, "layers": (1, 2)}  # a dataclass is stored as a dict
    assert got["scalars"] == [4, 0.5, True, "word"]
    assert [type(v) for v in got["scalars"]] == [int, float, bool, str]  # NumPy scalars as Python ones
    assert got["keys"] == {7: "seven", "k": 1} and type(next(iter(got["keys"]))) is int
    assert got["plain"] == payload["plain"]
    assert got["format"] == ck.FORMAT_VERSION


def test_what_cannot_be_stored_is_refused_before_writing(entry):
    for bad in ({"obj": np.array([object()])}, {"set": {1, 2}}, {"module": torch.nn.Linear(2, 2)}):
        with pytest.raises(TypeError):
            entry.save(bad)
    with pytest.raises(TypeError, match="dict"):
        entry.save([1, 2])
    assert not entry.path.parent.exists() or _files(entry.path.parent) == []


def test_model_state_is_detached_on_the_cpu():
    layer = torch.nn.Linear(3, 2)
    state = ck.model_state(layer)
    assert set(state) == {"weight", "bias"}
    assert all(not v.requires_grad and v.device.type == "cpu" for v in state.values())
    state["weight"].zero_()
    assert layer.weight.abs().sum() > 0  # a copy, not a view of the live weights


# ---------------------------------------------------------------------------- keys and code versions


def test_cache_key_is_stable():
    parts = dict(config=Config(), data=np.arange(10), n=3, name="x", code="abc")
    key = cache_key(**parts)
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert cache_key(**parts) == key
    assert cache_key(**dict(reversed(list(parts.items())))) == key  # order of the parts is irrelevant
    assert cache_key(**{**parts, "config": Config(), "data": np.arange(10).copy()}) == key  # equal values
    # and the same in another process (no per-process hash seed in it)
    script = (
        "import numpy as np; from tests.test_checkpoint import Config; "
        "from common.training.checkpoint import cache_key; "
        "print(cache_key(config=Config(), data=np.arange(10), n=3, name='x', code='abc'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == key


def test_cache_key_changes_with_every_part():
    base = dict(config=Config(), data=np.arange(10), n=3, code="abc")
    key = cache_key(**base)
    changed = {
        "dataclass field": {**base, "config": replace(Config(), width=9)},
        "nested field": {**base, "config": replace(Config(), layers=(1, 3))},
        "array content": {**base, "data": np.where(np.arange(10) == 7, -1, np.arange(10))},
        "array shape": {**base, "data": np.arange(10).reshape(2, 5)},
        "array dtype": {**base, "data": np.arange(10).astype(np.int32)},
        "number": {**base, "n": 4},
        "code": {**base, "code": "abd"},
        "extra part": {**base, "seed": 0},
    }
    keys = {what: cache_key(**parts) for what, parts in changed.items()}
    for what, k in keys.items():
        assert k != key, what
    assert len(set(keys.values())) == len(keys)
    with pytest.raises(TypeError, match="cannot hash"):
        cache_key(model=torch.nn.Linear(2, 2))


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "cache_scheme_probe.py"
    source.write_text("def f(x):\n    return x + 1\n")
    module = importlib.import_module("cache_scheme_probe")
    try:
        v_module, v_func = code_version(module), code_version(module.f)
        assert code_version(module) == v_module and code_version(module.f) == v_func
        assert v_module != code_version(module, module.f)
        source.write_text("def f(x):\n    return x + 2  # edited\n")
        module = importlib.reload(module)
        assert code_version(module) != v_module
        assert code_version(module.f) != v_func
    finally:
        sys.modules.pop("cache_scheme_probe", None)
    with pytest.raises(ValueError, match="at least one"):
        code_version()


# ---------------------------------------------------------------------------- unusable files


@pytest.mark.parametrize("how", DAMAGE_KINDS)
def test_damaged_file_warns_with_its_path_and_is_removed(entry, how):
    entry.save({"x": np.arange(100)})
    damage(entry.path, how)
    with pytest.warns(CacheWarning, match=re.escape(str(entry.path))):
        assert entry.load() is None
    assert not entry.path.exists()


@pytest.mark.parametrize(
    "stored, required, why",
    [
        ({"format": ck.FORMAT_VERSION - 1, "x": 1}, (), "format version"),
        ({"x": 1}, (), "format version"),
        ([1, 2, 3], (), "not a checkpoint dict"),
        ({"format": ck.FORMAT_VERSION, "x": 1}, ("x", "model"), "'model'"),
    ],
)
def test_wrong_version_or_missing_keys_warn_and_remove(entry, stored, required, why):
    entry.path.parent.mkdir(parents=True)
    torch.save(stored, entry.path)
    with pytest.warns(CacheWarning, match=re.escape(str(entry.path)) + ".*" + re.escape(why)):
        assert entry.load(required=required) is None
    assert not entry.path.exists()


def test_crafted_pickle_never_runs(entry, tmp_path):
    marker = tmp_path / "marker"
    write_crafted_pickle(entry.path, marker)
    with pytest.warns(CacheWarning, match=re.escape(str(entry.path))):
        assert entry.load() is None
    assert not marker.exists() and not entry.path.exists()
    write_crafted_pickle(entry.path, marker)  # and through cached(): recomputed, still never run
    with pytest.warns(CacheWarning):
        payload, from_cache = cached(entry, lambda: {"x": 1}, verbose=False)
    assert payload == {"x": 1} and not from_cache and not marker.exists()


def test_missing_file_is_none_without_warning(entry, recwarn):
    assert entry.load() is None and not entry.exists()
    assert not [w for w in recwarn if issubclass(w.category, CacheWarning)]


# ---------------------------------------------------------------------------- atomic writes


def test_save_leaves_only_the_final_file(entry):
    path = entry.save({"x": np.arange(5)})
    assert path == entry.path and _files(path.parent) == [path.name]
    entry.save({"x": np.arange(6)})  # overwrite
    assert _files(path.parent) == [path.name] and entry.load()["x"].shape == (6,)


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_save_keeps_the_old_file_and_no_temporary(entry, monkeypatch, error):
    entry.save({"x": np.arange(3), "version": "old"})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(type(error)):
        entry.save({"x": np.arange(1000), "version": "new"})
    monkeypatch.undo()
    assert _files(entry.path.parent) == [entry.path.name]
    old = entry.load()
    assert old["version"] == "old" and old["x"].tolist() == [0, 1, 2]


def test_partial_entry_is_a_separate_file(entry):
    partial = entry.partial
    assert partial.path.parent == entry.path.parent
    assert partial.path.name == "thing-0123abcd.partial.pt" and entry.path.name == "thing-0123abcd.pt"
    partial.save({"step": 3})
    assert not entry.exists() and entry.load() is None
    assert partial.load()["step"] == 3
    entry.save({"done": True})
    partial.discard()
    assert entry.exists() and not partial.exists()


# ---------------------------------------------------------------------------- entries and cached()


def test_cache_entry_names(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    assert cache_entry("cnn", "vgg_adam", "abc").path == tmp_path / "cnn" / "vgg_adam-abc.pt"
    for kind, name, key in [
        ("cnn", "a/b", "k"),
        ("cnn", ".hidden", "k"),
        ("cnn", "..", "k"),
        ("x/y", "n", "k"),
        (".cache", "n", "k"),
        ("cnn", "n", "../k"),
        ("cnn", "", "k"),
        ("cnn", "n", ""),
    ]:
        with pytest.raises(ValueError, match="plain file-name part"):
            cache_entry(kind, name, key)


def test_cached_computes_once_then_loads(entry, capsys):
    calls = []

    def compute():
        calls.append(1)
        return {"weights": torch.ones(3), "history": {"loss": [3.0, 2.0]}}

    payload, from_cache = cached(entry, compute, required=("weights",))
    assert not from_cache and len(calls) == 1 and entry.exists()
    again, from_cache = cached(entry, compute, required=("weights",))
    assert from_cache and len(calls) == 1
    torch.testing.assert_close(again["weights"], payload["weights"])
    assert again["history"] == {"loss": [3.0, 2.0]}
    assert str(entry.path) in capsys.readouterr().out
    with pytest.warns(CacheWarning, match="'optimizer'"):  # a file without a required key is recomputed
        _, from_cache = cached(entry, compute, required=("weights", "optimizer"), verbose=False)
    assert not from_cache and len(calls) == 2
    payload, from_cache = cached(None, compute)
    assert not from_cache and len(calls) == 3


# ---------------------------------------------------------------------------- two processes at once

WORKER = textwrap.dedent("""
    import sys, time, warnings
    from pathlib import Path
    import numpy as np
    from common.training.checkpoint import CacheWarning, cache_entry

    warnings.simplefilter("error", CacheWarning)
    root, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    entry = cache_entry("race", "shared", "k", root=root)
    (root / f"ready-{me}").touch()
    deadline = time.time() + 120
    while not (root / f"ready-{other}").exists():  # start together
        if time.time() > deadline:
            sys.exit("the other worker never started")
        time.sleep(0.01)
    for i in range(60):
        entry.save({"who": me, "i": i, "x": np.full(20_000, i, dtype=np.float32)})
        got = entry.load(required=("who", "i", "x"))
        assert got is not None, "a complete file was expected"
        assert got["x"].shape == (20_000,) and (got["x"] == got["i"]).all(), "a mixed file"
""")


def test_two_processes_save_and_load_the_same_entry(tmp_path):
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), me, other],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    results = [w.communicate(timeout=300) for w in workers]
    for w, (_, err) in zip(workers, results):
        assert w.returncode == 0, err[-2000:]
    entry = cache_entry("race", "shared", "k", root=tmp_path)
    final = entry.load(required=("who", "i", "x"))
    assert final is not None and final["i"] == 59 and final["who"] in {"a", "b"}
    assert _files(entry.path.parent) == [entry.path.name]  # no temporary left behind
