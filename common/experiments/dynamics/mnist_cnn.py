"""A small CNN with dropout and weight decay on MNIST: several runs with learning curves and weight snapshots."""

from __future__ import annotations

import torch

from common.experiments.dynamics.landscape import weight_trajectories
from common.experiments.dynamics.training import TensorData, TrainConfig
from common.torch_models.mnist import MNISTCNNConfig, build_mnist_cnn

__all__ = ["cnn_trajectories"]


def cnn_trajectories(
    data: TensorData,
    cnn_config: MNISTCNNConfig | None = None,
    config: TrainConfig | None = None,
    num_runs: int = 4,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Train ``num_runs`` ``MNISTCNN`` s (init seeds ``0..num_runs-1``) on image data ``(N, 1, 28, 28)`` and keep
    their weights every ``config.snapshot_every`` epochs (default config: 10 epochs of AdamW, learning rate
    2e-3, weight decay 0.01, batches of 64, a snapshot every epoch).

    Returns ``weight_trajectories``' dict (``snapshots (R, S, P)``, ``epochs``, clean training ``loss`` and
    ``acc (R, S)``, ``slices``, ``histories`` with the loop's per-epoch curves) plus ``first_layer``: the
    slice of the first convolution's weights and biases in a snapshot.
    """
    if data.X_train.ndim != 4:
        raise ValueError(
            f"cnn_trajectories needs images (N, 1, 28, 28), got X_train of shape {tuple(data.X_train.shape)}; "
            "load them with mnist_tensors(..., images=True)"
        )
    cnn_config = cnn_config or MNISTCNNConfig()
    config = config or TrainConfig(
        epochs=10, batch_size=64, lr=2e-3, optimizer="adamw", weight_decay=0.01, snapshot_every=1, record_steps=False
    )
    res = weight_trajectories(
        None,
        data,
        config,
        num_runs=num_runs,
        device=device,
        progress=progress,
        model_fn=lambda seed: build_mnist_cnn(cnn_config, seed=seed),
    )
    sl = res["slices"]
    res["first_layer"] = slice(sl["conv.0.weight"].start, sl["conv.0.bias"].stop)
    return res
