"""What the GAN settings of assignment3/GAN_MNIST.ipynb buy: learning rate and weight averaging, side by side.

Run from the repository root (MNIST from get_datasets.sh; the scoring classifier is trained once and cached):

    python -m bench.gan                          # MLP and DCGAN (C=32), lr 2e-4 vs 1e-3, 3000 steps each
    python -m bench.gan --steps 1000 --models mlp --lrs 1e-3 --every 500   # a smaller run
    python -m bench.gan --markdown               # also print the table as Markdown (for bench/RESULTS.md)

Every run trains with ``train_gan`` (batch 64, Adam with beta1 0.5, weight average with decay 0.999) from the
same seed and, every ``--every`` steps, scores 5000 samples of both the trained weights ("raw") and their
running average ("EMA") with the classifier-based Inception Score. All runs use the same samples' seed, so
the columns are comparable. Train times are wall-clock seconds of training (scoring excluded) with torch's
default threads; the load average is printed, since a busy machine stretches them.
"""

from __future__ import annotations

import argparse
import os

import torch

from bench.tables import cpu_description, render_table
from common.config import get_device
from common.data.images import load_mnist
from common.experiments.gan import GANTrainConfig, train_gan
from common.experiments.gan_scoring import get_mnist_classifier, score_samples
from common.torch_models.gan import DCGANConfig, GANConfig, build_gan, generate, to_gan_range

MODELS = {"mlp": GANConfig(), "dcgan": DCGANConfig(channels=32)}


def run(
    name: str, lr: float, steps: int, every: int, X: torch.Tensor, classifier, num_score: int, device: torch.device
) -> dict:
    G, D = build_gan(MODELS[name], seed=0)
    config = GANTrainConfig(num_steps=steps, lr_g=lr, lr_d=lr, checkpoint_every=every, seed=0)

    def score(g) -> float:
        return score_samples(classifier, generate(g, num=num_score, seed=1))["inception_score"]

    history = train_gan(
        G, D, X, config, device=device, callback=lambda step, g_ema: (score(G), score(g_ema)), progress=True
    )
    return {"model": name, "lr": lr, "time": history["train_time"], "curve": history["callback"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--lrs", nargs="+", type=float, default=[2e-4, 1e-3])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=1000, help="score every this many steps")
    parser.add_argument("--num-score", type=int, default=5000, help="samples per Inception Score")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if args.steps % args.every:
        parser.error(f"--steps ({args.steps}) must be a multiple of --every ({args.every})")

    device = get_device()
    mnist = load_mnist()
    X = to_gan_range(mnist.X_train)
    classifier, info = get_mnist_classifier(data=mnist, device=device)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{cpu_description()}; classifier test accuracy {info['test_acc']:.4f}"
    )
    results = [
        run(m, lr, args.steps, args.every, X, classifier, args.num_score, device)
        for m in args.models
        for lr in args.lrs
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    steps = [step for step, _ in results[0]["curve"]]
    header = ["model", "lr", "train s"] + [f"IS raw/EMA @{s}" for s in steps]
    rows = [
        [r["model"], f"{r['lr']:g}", f"{r['time']:.0f}"] + [f"{raw:.2f} / {ema:.2f}" for _, (raw, ema) in r["curve"]]
        for r in results
    ]
    print(f"\nInception Score of {args.num_score} samples (real test digits score ~9.8); load average {load:.2f}")
    print(render_table(header, rows, markdown=False))
    if args.markdown:
        print("\n" + render_table(header, rows, markdown=True))


if __name__ == "__main__":
    main()
