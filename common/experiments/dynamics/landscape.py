"""The loss landscape: weight trajectories in PCA, input sensitivity, sharpness, batch size, interpolation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from common.config import get_device, make_generator
from common.data.torch_data import TensorBatches
from common.experiments.dynamics.training import (
    EVAL_BATCH,
    TensorData,
    TrainConfig,
    loss_function,
    make_mlp,
    train_model,
)
from common.training.loop import evaluate
from common.training.params import flat_params, set_flat_params

__all__ = [
    "layer_slices",
    "weight_trajectories",
    "pca_project",
    "trajectory_distances",
    "jacobian_norm",
    "input_gradient_norm",
    "hessian_top_eigenvalue",
    "batch_size_sweep",
    "interpolate_models",
]


def _place(model: nn.Module, device: torch.device | None) -> torch.device:
    """Move ``model`` to ``device`` (None: leave it where it is); returns the device it is on."""
    if device is None:
        param = next(model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
    model.to(device)
    return device


def layer_slices(model: nn.Module) -> dict[str, slice]:
    """Where each named parameter sits in ``flat_params(model)``: ``{'net.0.weight': slice(0, 784 * H), ...}``."""
    slices, offset = {}, 0
    for name, p in model.named_parameters():
        slices[name] = slice(offset, offset + p.numel())
        offset += p.numel()
    return slices


def weight_trajectories(
    hidden_dims,
    data: TensorData,
    config: TrainConfig,
    num_runs: int = 4,
    activation: str = "relu",
    device: torch.device | None = None,
    progress: bool = True,
    model_fn: Callable[[int], nn.Module] | None = None,
) -> dict:
    """Train ``num_runs`` nets (init seeds ``0..num_runs-1``) and keep their weights every
    ``config.snapshot_every`` epochs.

    The nets are MLPs ``D -> hidden_dims -> out`` unless ``model_fn(seed)`` builds them (e.g. a CNN; then
    ``hidden_dims`` and ``activation`` are unused). Returns ``snapshots (R, S, P)`` (S snapshots per run, the
    first at initialisation), ``epochs (S,)``, ``loss (R, S)`` and ``acc (R, S)`` (training loss and accuracy
    at each snapshot, evaluated afterwards in eval mode; accuracy NaN for regression), ``slices``
    (``layer_slices``) and ``histories`` (one ``train_model`` history per run).
    """
    if not config.snapshot_every:
        raise ValueError("config.snapshot_every must be > 0 (epochs between weight snapshots)")
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    device = device or get_device()
    if model_fn is None:
        out_dim = data.y_train.shape[1] if config.loss != "ce" else int(data.y_train.max()) + 1

        def model_fn(seed):
            return make_mlp(data.X_train.shape[1], hidden_dims, out_dim, activation, seed=seed)

    loss_fn = loss_function(config.loss)
    train_set = TensorBatches(data.X_train, data.y_train, EVAL_BATCH)
    snaps, losses, accs, hists = [], [], [], []
    for run in tqdm(range(num_runs), desc="runs", disable=not progress):
        model = model_fn(run)
        hist = train_model(
            model, data, replace(config, data_seed=config.data_seed + run), device=device, progress=False
        )
        stats = []
        for w in hist["snapshots"]:
            set_flat_params(model, torch.from_numpy(w))
            stats.append(evaluate(model, train_set, loss_fn, device))
        snaps.append(np.stack(hist.pop("snapshots")))
        losses.append([s["loss"] for s in stats])
        accs.append([s["acc"] for s in stats])
        hists.append(hist)
    return {
        "snapshots": np.stack(snaps),
        "epochs": np.array(hists[0]["snapshot_epoch"]),
        "loss": np.array(losses),
        "acc": np.array(accs),
        "slices": layer_slices(model),
        "histories": hists,
    }


def pca_project(snapshots: np.ndarray, n_components: int = 2, columns: slice | None = None):
    """Project weight snapshots ``(R, S, P)`` onto the top principal components of all of them together.

    ``columns`` restricts to some parameters (e.g. one layer's slice). Returns ``(projected (R, S, k),
    explained_variance_ratio (k,))``; one PCA (sklearn) is fitted on all ``R * S`` snapshots, so the runs
    share one coordinate system.
    """
    from sklearn.decomposition import PCA

    snapshots = np.asarray(snapshots)
    if snapshots.ndim != 3:
        raise ValueError(f"snapshots must have shape (runs, snapshots, params), got {snapshots.shape}")
    R, S, _ = snapshots.shape
    W = snapshots if columns is None else snapshots[:, :, columns]
    flat = W.reshape(R * S, -1)  # (R*S, P)
    if n_components > min(flat.shape):
        raise ValueError(f"n_components={n_components} exceeds min(samples, features)={min(flat.shape)}")
    pca = PCA(n_components=n_components).fit(flat)
    return pca.transform(flat).reshape(R, S, n_components), pca.explained_variance_ratio_


def trajectory_distances(snapshots: np.ndarray, columns: slice | None = None) -> dict:
    """Distances along and between weight trajectories ``(R, S, P)`` in the full weight space (not a projection).

    ``columns`` restricts to some parameters (e.g. one layer's slice). Returns ``travel (R,)`` (each run's
    distance from its first to its last snapshot), ``path (R, S-1)`` (the length of each step between
    snapshots), ``start_gap`` and ``end_gap`` (the smallest distance between two runs' first / last snapshots).
    """
    from scipy.spatial.distance import pdist

    snapshots = np.asarray(snapshots, dtype=np.float64)
    if snapshots.ndim != 3 or snapshots.shape[0] < 2 or snapshots.shape[1] < 2:
        raise ValueError(
            f"snapshots must have shape (runs, snapshots, params) with at least two runs and two snapshots, "
            f"got {snapshots.shape}"
        )
    W = snapshots if columns is None else snapshots[:, :, columns]
    return {
        "travel": np.linalg.norm(W[:, -1] - W[:, 0], axis=1),
        "path": np.linalg.norm(np.diff(W, axis=1), axis=2),
        "start_gap": float(pdist(W[:, 0]).min()),
        "end_gap": float(pdist(W[:, -1]).min()),
    }


def jacobian_norm(
    model: nn.Module, X: torch.Tensor, batch_size: int = 1024, device: torch.device | None = None
) -> float:
    """Sensitivity: mean over samples of the Frobenius norm of the output-input Jacobian ``d f(x) / d x``
    (``C x D`` per sample). For a linear net ``f(x) = W x + b`` it is ``||W||_F``.

    Samples must not interact (no batch norm in train mode): row ``i`` of ``d sum_i f_c(x_i) / d X`` is then
    ``d f_c(x_i) / d x_i``, so ``C`` backward passes give every Jacobian. ``device``: where to compute
    (the model is moved there; None: the model's device).
    """
    device = _place(model, device)
    model.eval()
    total = 0.0
    for start in range(0, len(X), batch_size):
        x = X[start : start + batch_size].to(device, copy=True).requires_grad_(True)
        out = model(x)  # (B, C)
        sq = torch.zeros(len(x), device=device)
        for c in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, c].sum(), x, retain_graph=c < out.shape[1] - 1)
            sq += g.reshape(len(x), -1).pow(2).sum(1)
        total += float(sq.sqrt().sum())
    return total / len(X)


def input_gradient_norm(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    batch_size: int = 1024,
    device: torch.device | None = None,
) -> float:
    """Mean over samples of ``||d loss(f(x_i), y_i) / d x_i||_2``: how much the loss moves with the input."""
    device = _place(model, device)
    model.eval()
    loss_fn = loss_function(loss, reduction="sum")  # summed: each row's gradient is its own sample's
    total = 0.0
    for start in range(0, len(X), batch_size):
        x = X[start : start + batch_size].to(device, copy=True).requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(model(x), y[start : start + batch_size].to(device)), x)
        total += float(g.reshape(len(x), -1).norm(dim=1).sum())
    return total / len(X)


def hessian_top_eigenvalue(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    num_iters: int = 30,
    tol: float = 1e-4,
    seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """Sharpness: the largest-magnitude eigenvalue of the Hessian of the mean loss on ``(X, y)`` with respect
    to all parameters, by power iteration on Hessian-vector products (double backprop, no Hessian stored).

    Stops after ``num_iters`` iterations or when the estimate changes by less than ``tol`` (relative).
    The start vector is drawn from a private generator seeded with ``seed``.
    """
    device = _place(model, device)
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    loss_value = loss_function(loss)(model(X.to(device)), y.to(device))
    grads = torch.autograd.grad(loss_value, params, create_graph=True)
    g = make_generator(seed)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(device) for p in params]  # one tensor per parameter
    # Power iteration: Hv = d(grads . v)/d params (torch.autograd.grad of grads with grad_outputs=v, keeping the
    # graph); the Rayleigh quotient v.Hv (v of unit norm) estimates the eigenvalue; then v <- Hv / ||Hv||.
    # Stop after num_iters or when the estimate changes by <= tol relative; eig = 0.0 if Hv vanishes.
    ### BEGIN SOLUTION
    norm = torch.sqrt(sum((t * t).sum() for t in v))
    v = [t / norm for t in v]
    eig = 0.0
    for _ in range(num_iters):
        Hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new_eig = float(sum((a * b).sum() for a, b in zip(v, Hv)))  # Rayleigh quotient v^T H v
        norm = torch.sqrt(sum((t * t).sum() for t in Hv))
        if norm == 0:
            eig = 0.0
            break
        v = [t.detach() / norm for t in Hv]
        converged = abs(new_eig - eig) <= tol * abs(new_eig)
        eig = new_eig
        if converged:
            break
    ### END SOLUTION
    return eig


def batch_size_sweep(
    batch_sizes,
    data: TensorData,
    hidden_dims=(128,),
    config: TrainConfig | None = None,
    init_seed: int = 0,
    num_eval: int = 1000,
    hessian_iters: int = 20,
    lr_scaling: str = "none",
    base_batch_size: int = 64,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Train the same MLP (same initial weights) with each batch size for the same number of epochs; then
    measure on ``num_eval`` training samples its sensitivity (``jacobian_norm``, ``input_gradient_norm``)
    and sharpness (``hessian_top_eigenvalue``). ``lr_scaling`` 'none' keeps ``config.lr``; 'sqrt' / 'linear'
    use ``config.lr * (b / base_batch_size) ** (1/2 or 1)``, so large batches are not simply under-trained.

    Returns arrays over batch sizes: ``batch_size``, ``train_loss``, ``train_acc``, ``test_loss``,
    ``test_acc``, ``jacobian_norm``, ``input_grad_norm``, ``sharpness``, ``steps``, ``lr``; and ``models`` (the
    trained nets, on ``device``, for ``interpolate_models``).
    """
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be a non-empty list of positive ints, got {batch_sizes}")
    config = config or TrainConfig(epochs=5, lr=1e-3, record_steps=False)
    powers = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}
    if lr_scaling not in powers:
        raise ValueError(f"lr_scaling must be one of {sorted(powers)}, got {lr_scaling!r}")
    device = device or get_device()
    num_classes = int(data.y_train.max()) + 1
    Xe, ye = data.X_train[:num_eval], data.y_train[:num_eval]
    rows, models = [], []
    for b in tqdm(batch_sizes, desc="batch sizes", disable=not progress):
        model = make_mlp(data.X_train.shape[1], hidden_dims, num_classes, seed=init_seed)
        lr = config.lr * (b / base_batch_size) ** powers[lr_scaling]
        hist = train_model(
            model, data, replace(config, batch_size=b, lr=lr, eval_every=config.epochs), device=device, progress=False
        )
        rows.append(
            dict(
                batch_size=b,
                lr=lr,
                steps=config.epochs * -(-len(data.X_train) // b),
                **hist["final"],
                jacobian_norm=jacobian_norm(model, Xe, device=device),
                input_grad_norm=input_gradient_norm(model, Xe, ye, device=device),
                sharpness=hessian_top_eigenvalue(model, Xe, ye, num_iters=hessian_iters, seed=init_seed, device=device),
            )
        )
        models.append(model)
    result = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    result["models"] = models
    return result


def interpolate_models(
    model_a: nn.Module,
    model_b: nn.Module,
    data: TensorData,
    alphas=None,
    loss: str = "ce",
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Loss and accuracy of ``theta(alpha) = (1 - alpha) theta_a + alpha theta_b`` on train and test data.

    ``alphas`` default: 31 points in ``[-1, 2]``. Returns arrays ``alpha``, ``train_loss``, ``train_acc``,
    ``test_loss``, ``test_acc`` (accuracies NaN for regression losses). The two models are left as they are;
    a copy is evaluated on ``device`` (None: ``model_a``'s device).
    """
    theta_a, theta_b = flat_params(model_a), flat_params(model_b)
    if theta_a.shape != theta_b.shape:
        raise ValueError(
            f"models differ in size: {theta_a.numel()} vs {theta_b.numel()} parameters; "
            "interpolate between two nets of the same architecture"
        )
    alphas = np.linspace(-1.0, 2.0, 31) if alphas is None else np.asarray(alphas, dtype=np.float64)
    probe = copy.deepcopy(model_a)
    device = _place(probe, device)
    loss_fn = loss_function(loss)
    splits = {
        "train": TensorBatches(data.X_train, data.y_train, EVAL_BATCH),
        "test": TensorBatches(data.X_test, data.y_test, EVAL_BATCH),
    }
    out = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    for alpha in tqdm(alphas, desc="alpha", disable=not progress, leave=False):
        # Load theta(alpha) into `probe` (set_flat_params), evaluate it on both splits (`evaluate` with loss_fn
        # on device) and append its loss and accuracy to out["<split>_loss"] and out["<split>_acc"].
        ### BEGIN SOLUTION
        set_flat_params(probe, (1 - alpha) * theta_a + alpha * theta_b)
        for split, batches in splits.items():
            stats = evaluate(probe, batches, loss_fn, device)
            out[f"{split}_loss"].append(stats["loss"])
            out[f"{split}_acc"].append(stats["acc"])
        ### END SOLUTION
    return {"alpha": alphas, **{k: np.array(v) for k, v in out.items()}}
