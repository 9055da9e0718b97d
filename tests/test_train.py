"""PyTorch training helpers: train_epoch/evaluate/fit against hand computations on tiny problems."""
import numpy as np
import pytest
import torch
from torch import nn

from common.data import make_blobs, make_loader
from common.train import accuracy, evaluate, fit, get_device, train_epoch



def _data(n=120, seed=0):
    X, y = make_blobs(n, centers=3, cluster_std=0.5, seed=seed)
    return X.astype(np.float32), y


def _model(seed=0):
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
        loss = nn.functional.cross_entropy(b(torch.tensor(X[i:i + 20])), torch.tensor(y[i:i + 20]))
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
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 ** 4)


def test_fit_learns_and_records_history():
    X, y = _data(210)  # make_blobs draws its centres from the seed: split one sample
    X, y, Xv, yv = X[:150], y[:150], X[150:], y[150:]
    model = _model()
    calls = []
    hist = fit(model, make_loader(X, y, 16, shuffle=True, seed=0), torch.optim.Adam(model.parameters(), lr=0.05),
               epochs=6, val_loader=make_loader(Xv, yv, 64), device=torch.device("cpu"), progress=False,
               on_epoch_end=lambda e, h: calls.append(e))
    assert calls == list(range(6))
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_time"):
        assert len(hist[key]) == 6, key
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["val_acc"][-1] > 0.9


def test_fit_rejects_zero_epochs():
    model = _model()
    with pytest.raises(ValueError, match="epochs"):
        fit(model, [], torch.optim.SGD(model.parameters(), lr=0.1), epochs=0)


def test_get_device():
    assert isinstance(get_device(), torch.device)
    assert get_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="prefer"):
        get_device("tpu")
