"""PyTorch training helpers: train_epoch/evaluate/fit against hand computations on tiny problems."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from common.config import get_device
from common.data.generators import make_blobs
from common.data.torch_data import TensorBatches, make_loader
from common.training.loop import accuracy, evaluate, fit, train_epoch
from common.training.optimizers import make_optimizer

CPU = torch.device("cpu")


def _data(n=120, seed=0):
    X, y = make_blobs(n, centers=3, cluster_std=0.5, seed=seed)
    return X.astype(np.float32), y


def _model(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_evaluate_weights_batches_by_size():
    X, y = _data(50)
    model = _model()
    res = evaluate(model, make_loader(X, y, batch_size=16))  # batches 16, 16, 16, 2
    with torch.no_grad():
        logits = model(torch.tensor(X))
        loss = nn.functional.cross_entropy(logits, torch.tensor(y)).item()
    assert res["loss"] == pytest.approx(loss, rel=1e-5)
    assert res["acc"] == pytest.approx(accuracy(logits, torch.tensor(y)))


def test_train_epoch_matches_manual_sgd():
    X, y = _data(40)
    a, b = _model(1), _model(1)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    stats = train_epoch(a, make_loader(X, y, batch_size=20), opt_a, progress=False)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    losses = []
    for i in (0, 20):
        opt_b.zero_grad()
        loss = nn.functional.cross_entropy(b(torch.tensor(X[i : i + 20])), torch.tensor(y[i : i + 20]))
        loss.backward()
        opt_b.step()
        losses.append(loss.item())
    assert stats["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_clip_grad_norm_bounds_the_step():
    X, y = _data(30)
    model = _model(2)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    train_epoch(model, make_loader(X, y, batch_size=30), opt, clip_grad_norm=1e-3, progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() <= 1e-3 * (1 + 1e-4)


def test_scheduler_steps_per_batch():
    X, y = _data(40)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train_epoch(model, make_loader(X, y, batch_size=10), opt, scheduler=sched, progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5**4)


def test_fit_learns_and_records_history():
    X, y = _data(210)  # make_blobs draws its centres from the seed: split one sample
    X, y, Xv, yv = X[:150], y[:150], X[150:], y[150:]
    model = _model()
    calls = []
    hist = fit(
        model,
        make_loader(X, y, 16, shuffle=True, seed=0),
        torch.optim.Adam(model.parameters(), lr=0.05),
        epochs=6,
        val_loader=make_loader(Xv, yv, 64),
        device=CPU,
        progress=False,
        on_epoch_end=lambda e, h: calls.append(e),
    )
    assert calls == [1, 2, 3, 4, 5, 6] and hist["epoch"] == calls and hist["val_epoch"] == calls
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "time"):
        assert len(hist[key]) == 6, key
    assert "step_loss" not in hist and "epoch_time" not in hist
    assert all(b > a for a, b in zip(hist["time"], hist["time"][1:]))  # seconds since the start
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["val_acc"][-1] > 0.9


def test_fit_rejects_zero_epochs():
    model = _model()
    with pytest.raises(ValueError, match="epochs"):
        fit(model, [], torch.optim.SGD(model.parameters(), lr=0.1), epochs=0)
    with pytest.raises(ValueError, match="eval_every"):
        fit(model, [], torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, eval_every=0)


def test_empty_loader_is_a_clear_error():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no batches"):
        fit(model, [], opt, epochs=1, device=CPU, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, [])


def test_on_epoch_end_returning_true_stops_early():
    X, y = _data(60)
    model = _model()
    hist = fit(
        model,
        make_loader(X, y, 20),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=10,
        device=CPU,
        progress=False,
        on_epoch_end=lambda epoch, h: epoch == 3,
    )
    assert hist["epoch"] == [1, 2, 3] and len(hist["train_loss"]) == 3 and len(hist["time"]) == 3


def test_record_steps_gives_one_value_per_batch():
    X, y = _data(50)
    model = _model()
    hist = fit(
        model,
        make_loader(X, y, 16),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=2,
        device=CPU,
        progress=False,
        record_steps=True,
    )  # 4 batches (16, 16, 16, 2) per epoch
    assert len(hist["step_loss"]) == len(hist["grad_norm"]) == 8
    assert all(n > 0 for n in hist["grad_norm"])
    # the epoch's loss is the sample-weighted mean of its steps' losses
    sizes = np.array([16, 16, 16, 2])
    assert hist["train_loss"][0] == pytest.approx(np.dot(hist["step_loss"][:4], sizes) / 50, rel=1e-5)


def test_history_continues_an_earlier_run():
    X, y = _data(60)
    Xv, yv = _data(30, seed=1)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"val_loader": make_loader(Xv, yv, 30), "device": CPU, "progress": False}
    first = fit(model, make_loader(X, y, 20), opt, epochs=2, **kwargs)
    both = fit(model, make_loader(X, y, 20), opt, epochs=3, history=first, **kwargs)
    assert both["epoch"] == [1, 2, 3, 4, 5] and both["val_epoch"] == [1, 2, 3, 4, 5]
    assert both["train_loss"][:2] == first["train_loss"] and len(both["val_acc"]) == 5
    assert both["time"][:2] == first["time"] and both["time"][2] > first["time"][-1]
    assert first["epoch"] == [1, 2]  # the earlier history is not modified


def test_eval_every_evaluates_every_kth_epoch_and_the_last():
    X, y = _data(40)
    model = _model()
    hist = fit(
        model,
        make_loader(X, y, 20),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=5,
        val_loader=make_loader(X, y, 40),
        eval_every=2,
        device=CPU,
        progress=False,
    )
    assert hist["epoch"] == [1, 2, 3, 4, 5] and hist["val_epoch"] == [2, 4, 5]
    assert len(hist["val_loss"]) == len(hist["val_acc"]) == 3


def test_regression_targets_give_nan_accuracy():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]])  # (64, 1) float targets
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
    loader = TensorBatches(X, y, batch_size=16, shuffle=True, seed=0)
    hist = fit(
        model,
        loader,
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=20,
        val_loader=loader,
        loss_fn=nn.MSELoss(),
        device=CPU,
        progress=False,
    )
    assert all(math.isnan(a) for a in hist["train_acc"] + hist["val_acc"])
    assert hist["val_loss"][-1] < 1e-3 * hist["val_loss"][0]
    assert math.isnan(evaluate(model, loader, nn.MSELoss())["acc"])


def test_get_device():
    assert isinstance(get_device(), torch.device)
    assert get_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="prefer"):
        get_device("tpu")


def test_fit_in_bfloat16_keeps_float32_weights_and_learns(monkeypatch):
    monkeypatch.delenv("COURSE_THREADS", raising=False)  # the load-aware threads at work too
    X, y = _data(240)
    model = _model(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    threads_before = torch.get_num_threads()
    history = fit(
        model,
        make_loader(X, y, batch_size=32),
        opt,
        6,
        val_loader=make_loader(X, y, batch_size=64),
        device=CPU,
        progress=False,
        adapt_threads=True,
        autocast=torch.bfloat16,
    )
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert history["val_acc"][-1] > 0.9 and history["train_loss"][-1] < history["train_loss"][0]
    assert torch.get_num_threads() == threads_before  # restored after training
    # the forward pass really ran in bfloat16
    seen = []
    hook = model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    train_epoch(model, make_loader(X, y, batch_size=240), opt, progress=False, autocast=torch.bfloat16)
    hook.remove()
    assert seen == [torch.bfloat16]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizer_takes_the_same_steps_as_the_default(name):
    X, y = (torch.tensor(a) for a in _data(64))
    models = [_model(seed=3), _model(seed=3)]
    opts = [
        make_optimizer(m.parameters(), name, lr=1e-2, weight_decay=1e-3, fused=f) for m, f in zip(models, (False, True))
    ]
    assert opts[1].defaults["fused"] and not opts[0].defaults["fused"]
    for _ in range(20):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X), y).backward()
            opt.step()
    start = _model(seed=3)
    for p_default, p_fused, p_start in zip(models[0].parameters(), models[1].parameters(), start.parameters()):
        assert not torch.equal(p_default, p_start)  # both moved ...
        torch.testing.assert_close(p_fused, p_default, rtol=1e-5, atol=1e-6)  # ... the same way


def test_fused_is_only_for_adam():
    with pytest.raises(ValueError, match="fused applies to 'adam' and 'adamw'"):
        make_optimizer(_model().parameters(), "sgd", fused=True)
