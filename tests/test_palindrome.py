"""PalindromeDataset, the palindrome training helpers and the cached accuracy-vs-length sweep."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import common.experiments.palindrome as palindrome_module
from common.data.palindrome import PalindromeDataset, all_palindromes, encode_digits, make_palindromes
from common.experiments.palindrome import (
    SampledBatches,
    accuracy_vs_length,
    input_gradient_norms,
    palindrome_accuracy,
    train_palindrome,
)
from common.torch_models.rnn import RNNConfig, VanillaRNN, build_model
from common.training.checkpoint import CacheWarning
from tests.cache_faults import DAMAGE_KINDS, damage, write_crafted_pickle

CPU = torch.device("cpu")


@pytest.mark.parametrize("T", [2, 3, 4, 7, 10])
def test_make_palindromes_are_palindromes(T):
    d = make_palindromes(500, T, torch.Generator().manual_seed(0))
    assert d.shape == (500, T) and d.dtype == torch.int64
    assert torch.equal(d, d.flip(1))
    assert d.min() >= 0 and d.max() <= 9
    # the first ceil(T/2) digits are free: every digit value shows up in each of them
    for t in range((T + 1) // 2):
        assert len(torch.unique(d[:, t])) == 10


def test_input_is_all_but_last_and_target_is_last():
    ds = PalindromeDataset(7, seed=3, one_hot=False)
    x, y = ds.sample(64)
    assert x.shape == (64, 6, 1) and y.shape == (64,)
    assert torch.equal(y, x[:, 0, 0].long())  # the last digit mirrors the first


def test_one_hot_and_scalar_encodings_agree():
    a, b = PalindromeDataset(6, seed=1, one_hot=True), PalindromeDataset(6, seed=1, one_hot=False)
    (xa, ya), (xb, yb) = a.sample(32), b.sample(32)
    assert xa.shape == (32, 5, 10) and xa.dtype == torch.float32
    assert torch.all(xa.sum(-1) == 1)
    assert torch.equal(xa.argmax(-1), xb[..., 0].long()) and torch.equal(ya, yb)
    assert a.input_dim == 10 and b.input_dim == 1 and a.input_length == 5


def test_deterministic_per_seed():
    s1, s2, s3 = (PalindromeDataset(9, seed=s) for s in (0, 0, 1))
    assert torch.equal(s1.sample(100)[0], s2.sample(100)[0])
    assert not torch.equal(s1.sample(100)[0], s3.sample(100)[0])
    s1.reset()
    s2.reset()
    assert torch.equal(s1.sample(10)[1], s2.sample(10)[1])
    # items depend on (seed, index) only, whatever the access order
    x5, y5 = s1[5]
    _ = s1[0], s1.sample(3)
    assert torch.equal(s2[5][0], x5) and s2[5][1] == y5
    assert not all(torch.equal(s1[i][0], s3[i][0]) for i in range(5))


def test_exhaustive_mode_enumerates_every_palindrome():
    ds = PalindromeDataset(5, exhaustive=True)
    assert len(ds) == 1000
    x, y = ds.all()
    digits = torch.cat([x.argmax(-1), y[:, None]], dim=1)  # (1000, 5)
    assert len({tuple(r.tolist()) for r in digits}) == 1000
    assert torch.equal(digits, digits.flip(1))
    assert digits[0].tolist() == [0] * 5 and digits[-1].tolist() == [9] * 5
    assert digits[123].tolist() == [1, 2, 3, 2, 1]  # lexicographic order
    assert all_palindromes(4).shape == (100, 4)
    xb, yb = ds.sample(50)
    assert xb.shape == (50, 4, 10)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="seq_length"):
        PalindromeDataset(1)
    with pytest.raises(ValueError, match="exhaustive"):
        PalindromeDataset(20, exhaustive=True)
    with pytest.raises(ValueError, match="exhaustive=True"):
        PalindromeDataset(5).all()
    with pytest.raises(IndexError):
        PalindromeDataset(5, num_samples=10)[10]


def test_works_with_a_dataloader():
    ds = PalindromeDataset(6, seed=0, num_samples=40)
    x, y = next(iter(DataLoader(ds, batch_size=16)))
    assert x.shape == (16, 5, 10) and y.shape == (16,)
    assert torch.equal(y, x[:, 0].argmax(-1))


def test_encode_digits_shapes():
    d = torch.tensor([[1, 2], [3, 4]])
    assert encode_digits(d).shape == (2, 2, 10) and encode_digits(d, one_hot=False).shape == (2, 2, 1)


def test_training_learns_short_palindromes_and_stops_early():
    model = VanillaRNN(RNNConfig(hidden_dim=32), generator=torch.Generator().manual_seed(0))
    ds = PalindromeDataset(4, seed=0)
    x, y = ds.sample(500)
    chance = palindrome_accuracy(model, x, y)
    hist = train_palindrome(
        model,
        ds,
        optimizer="adam",
        lr=1e-2,
        batch_size=64,
        max_steps=400,
        eval_every=20,
        eval_samples=300,
        device=CPU,
        progress=False,
    )
    assert hist["test_acc"] >= 0.99, hist["test_acc"]
    assert hist["steps"] < 400 and hist["val_acc"][-1] == 1.0  # stopped at 100%
    assert chance < 0.5
    # the loop's history: one epoch = eval_every steps, evaluated after each one
    assert hist["steps"] == len(hist["step_loss"]) == len(hist["grad_norm"]) == 20 * len(hist["epoch"])
    assert hist["val_epoch"] == hist["epoch"] and len(hist["time"]) == len(hist["epoch"])
    assert hist["step_loss"][-1] < hist["step_loss"][0]


def test_max_steps_is_a_budget_not_rounded_up_to_an_evaluation():
    model = build_model("rnn", RNNConfig(hidden_dim=4), torch.Generator().manual_seed(0))
    hist = train_palindrome(
        model,
        PalindromeDataset(5),
        max_steps=7,
        eval_every=3,
        eval_samples=10,
        test_samples=10,
        target_acc=2.0,
        device=CPU,
        progress=False,
    )
    assert hist["steps"] == 7 and hist["epoch"] == [1, 2, 3] and hist["val_epoch"] == [1, 2, 3]


def test_sampled_batches_continue_the_dataset_stream():
    ds = PalindromeDataset(5, seed=3)
    batches = SampledBatches(ds, 4, steps=2, total=5)
    passes = [list(batches) for _ in range(4)]
    assert [len(p) for p in passes] == [2, 2, 1, 0]
    ds.reset()
    expected = [ds.sample(4)[1] for _ in range(5)]
    got = [y for p in passes for _, y in p]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    with pytest.raises(ValueError, match="steps"):
        SampledBatches(ds, 4, steps=0)


def test_gradient_clipping_records_unclipped_norm():
    model = build_model("rnn", RNNConfig(hidden_dim=8), torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    hist = train_palindrome(
        model,
        PalindromeDataset(5),
        optimizer="rmsprop",
        max_steps=3,
        clip_grad_norm=1e-8,
        progress=False,
        test_samples=10,
        eval_samples=10,
        device=CPU,
    )
    assert len(hist["grad_norm"]) == 3 and min(hist["grad_norm"]) > 1e-8
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="optimizer"):
        train_palindrome(model, PalindromeDataset(5), optimizer="lbfgs", progress=False)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_accuracy_vs_length_shapes(kind):
    res = accuracy_vs_length(
        kind,
        [3, 4],
        [0, 1],
        config=RNNConfig(hidden_dim=4),
        max_steps=2,
        eval_samples=10,
        test_samples=20,
        device=CPU,
        progress=False,
        cache=False,
    )
    assert res["acc"].shape == (2, 2) and res["steps"].shape == (2, 2) and res["seconds"].shape == (2, 2)
    assert np.all((res["acc"] >= 0) & (res["acc"] <= 1)) and np.all(res["steps"] == 2)
    assert list(res["lengths"]) == [3, 4] and res["kind"] == kind
    with pytest.raises(ValueError, match="kind"):
        accuracy_vs_length("transformer", [3], [0], cache=False)


def test_input_gradient_norms():
    model = VanillaRNN(RNNConfig(hidden_dim=6), generator=torch.Generator().manual_seed(0)).double()
    x, y = PalindromeDataset(6, seed=0).sample(8)
    norms = input_gradient_norms(model, x.double(), y, device=CPU)
    assert isinstance(norms, np.ndarray) and norms.shape == (5,) and np.all(norms > 0)
    # oracle: one sample's gradient at step t by central differences
    x0, y0 = x[:1].double(), y[:1]
    loss = lambda z: torch.nn.functional.cross_entropy(model(z), y0, reduction="sum").item()
    t, h = 1, 1e-6
    num = torch.zeros(10, dtype=torch.float64)
    for k in range(10):
        e = torch.zeros_like(x0)
        e[0, t, k] = h
        num[k] = (loss(x0 + e) - loss(x0 - e)) / (2 * h)
    np.testing.assert_allclose(input_gradient_norms(model, x0, y0)[t], num.norm().item(), rtol=1e-6)
    # without recurrence only the last input reaches the output
    with torch.no_grad():
        model.W_hh.zero_()
    norms = input_gradient_norms(model, x.double(), y)
    assert np.all(norms[:-1] == 0) and norms[-1] > 0


# --- the cached sweep -------------------------------------------------------------------------------------

SWEEP = dict(config=RNNConfig(hidden_dim=4), eval_samples=10, test_samples=20, device=CPU, progress=False)


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    """Sweeps run in this process (the tests below patch its functions); the worker processes are tested once."""
    monkeypatch.setenv("COURSE_THREADS", "1")


def test_sweep_in_worker_processes_matches_one_process(monkeypatch):
    serial = accuracy_vs_length("rnn", [3, 4], [0, 1], max_steps=3, cache=False, **SWEEP)
    monkeypatch.delenv("COURSE_THREADS")
    monkeypatch.setattr("common.parallel.idle_cpus", lambda: 2)
    parallel = accuracy_vs_length("rnn", [3, 4], [0, 1], max_steps=3, cache=False, **SWEEP)
    for key in ("acc", "steps"):
        np.testing.assert_array_equal(serial[key], parallel[key])


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    return tmp_path / "palindrome"


def _files(folder, pattern="sweep_rnn-*.pt"):
    return sorted(p for p in folder.glob(pattern) if not p.name.endswith(".partial.pt"))


def test_sweep_cache_reuses_only_identical_settings(cache_root, capsys):
    a = accuracy_vs_length("rnn", [3], [0], max_steps=2, **SWEEP)
    assert len(_files(cache_root)) == 1 and not list(cache_root.glob("*.partial.pt"))
    b = accuracy_vs_length("rnn", [3], [0], max_steps=2, **SWEEP)
    assert "loaded from cache" in capsys.readouterr().out
    np.testing.assert_array_equal(a["acc"], b["acc"])
    assert b["kind"] == "rnn" and list(b["lengths"]) == [3]
    accuracy_vs_length("rnn", [3], [0], max_steps=3, **SWEEP)
    assert "loaded from cache" not in capsys.readouterr().out
    assert len(_files(cache_root)) == 2


def test_sweep_root_argument_replaces_the_cache_dir(tmp_path):
    accuracy_vs_length("rnn", [3], [0], max_steps=2, root=tmp_path / "elsewhere", **SWEEP)
    assert len(_files(tmp_path / "elsewhere" / "palindrome")) == 1


@pytest.mark.parametrize("how", DAMAGE_KINDS)
def test_damaged_sweep_file_is_rebuilt_with_a_warning(cache_root, how):
    first = accuracy_vs_length("rnn", [3], [0], max_steps=2, **SWEEP)
    (path,) = _files(cache_root)
    damage(path, how)
    with pytest.warns(CacheWarning, match=path.name):
        again = accuracy_vs_length("rnn", [3], [0], max_steps=2, **SWEEP)
    np.testing.assert_array_equal(first["acc"], again["acc"])
    assert torch.load(path, weights_only=True)["format"] == 2  # rewritten, readable


def test_crafted_pickle_at_the_sweep_path_never_runs(cache_root, tmp_path):
    accuracy_vs_length("rnn", [3], [0], max_steps=2, **SWEEP)
    (path,) = _files(cache_root)
    marker = tmp_path / "pwned"
    write_crafted_pickle(path, marker)
    with pytest.warns(CacheWarning, match=path.name):
        res = accuracy_vs_length("rnn", [3], [0], max_steps=2, **SWEEP)
    assert not marker.exists()
    assert res["acc"].shape == (1, 1)
    assert torch.load(path, weights_only=True)["format"] == 2


def test_interrupted_sweep_resumes_from_finished_runs(cache_root, monkeypatch):
    reference = accuracy_vs_length("rnn", [3, 4], [0, 1], max_steps=2, cache=False, **SWEEP)
    real, calls = palindrome_module.train_palindrome, []

    def failing_on_third(*args, **kwargs):
        calls.append(args[1].seq_length)
        if len(calls) == 3:
            raise KeyboardInterrupt("interrupted")
        return real(*args, **kwargs)

    # the patched function stays in place (it is part of the code the cache key hashes) but fails only once
    monkeypatch.setattr(palindrome_module, "train_palindrome", failing_on_third)
    with pytest.raises(KeyboardInterrupt):
        accuracy_vs_length("rnn", [3, 4], [0, 1], max_steps=2, **SWEEP)
    assert not _files(cache_root) and len(list(cache_root.glob("*.partial.pt"))) == 1
    calls.clear()
    resumed = accuracy_vs_length("rnn", [3, 4], [0, 1], max_steps=2, **SWEEP)
    assert calls == [4, 4]  # only the two runs not finished before the interruption
    np.testing.assert_array_equal(resumed["acc"], reference["acc"])
    np.testing.assert_array_equal(resumed["steps"], reference["steps"])
    assert len(_files(cache_root)) == 1 and not list(cache_root.glob("*.partial.pt"))


def test_damaged_partial_sweep_restarts_with_a_warning(cache_root, monkeypatch):
    real, fail = palindrome_module.train_palindrome, [True]

    def failing_on_second(*args, **kwargs):
        if fail[0] and args[1].seq_length == 4:
            raise RuntimeError("interrupted")
        return real(*args, **kwargs)

    # the patched function stays in place (it is part of the code the cache key hashes); only its fault goes
    monkeypatch.setattr(palindrome_module, "train_palindrome", failing_on_second)
    with pytest.raises(RuntimeError):
        accuracy_vs_length("rnn", [3, 4], [0], max_steps=2, **SWEEP)
    (partial,) = cache_root.glob("*.partial.pt")
    damage(partial, "truncated")
    fail[0] = False
    with pytest.warns(CacheWarning, match=partial.name):
        res = accuracy_vs_length("rnn", [3, 4], [0], max_steps=2, **SWEEP)
    assert res["acc"].shape == (2, 1) and len(_files(cache_root)) == 1


# --- device and global random state -----------------------------------------------------------------------


def _global_rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()


def _assert_same_rng(before):
    torch_state, np_state = _global_rng_state()
    assert torch.equal(torch_state, before[0]), "the global torch generator was used"
    assert (
        np_state[0] == before[1][0] and np.array_equal(np_state[1], before[1][1]) and np_state[2:] == before[1][2:]
    ), "NumPy's global generator was used"


def test_training_and_sweep_take_a_device_and_leave_global_rng_alone(tmp_path):
    before = _global_rng_state()
    model = build_model("lstm", RNNConfig(hidden_dim=4), torch.Generator().manual_seed(0))
    fresh = build_model("rnn", RNNConfig(hidden_dim=4))  # no generator: seeded from the OS, not globally
    hist = train_palindrome(
        model,
        PalindromeDataset(4, seed=1),
        max_steps=3,
        eval_every=2,
        eval_samples=10,
        test_samples=10,
        device=CPU,
        progress=False,
    )
    x, y = PalindromeDataset(4, seed=2).sample(8)
    acc = palindrome_accuracy(fresh, x, y, device=CPU)
    norms = input_gradient_norms(model, x, y, device=CPU)
    res = accuracy_vs_length("rnn", [3], [0], max_steps=2, root=tmp_path, **SWEEP)
    _assert_same_rng(before)
    assert hist["steps"] == 3 and 0 <= acc <= 1 and norms.shape == (3,) and res["acc"].shape == (1, 1)
    assert all(p.device.type == "cpu" for p in model.parameters())
