"""Training and inference throughput (images/s) of the reduced VGG that assignment2/CNN_CIFAR10.ipynb trains.

Run from the repository root:

    python -m bench.cnn                      # the notebook's model (width 0.25), both input shapes, CPU time
    python -m bench.cnn --widths 0.25 0.5 1  # other widths
    python -m bench.cnn --clock wall         # wall time with the course's thread policy (a quiet machine)
    python -m bench.cnn --compile            # also try torch.compile (slow to compile on CPU)
    python -m bench.cnn --bf16               # also bfloat16 autocast (fast where the CPU has AVX-512 BF16 / AMX)
    python -m bench.cnn --markdown           # also print the table as Markdown (for bench/RESULTS.md)

Each figure is the best of ``--repeats`` timed runs of ``--steps`` steps on random data (one warm-up run
first), so it measures the model and not the data. A separate row measures the data pipeline alone
(TensorBatches + Augment), which the training loop adds on top.

Clocks: ``--clock cpu`` (the default) runs one torch thread and times the process's CPU time, which is
its compute time even when other processes load the machine (wall-clock figures at a load average of 20
on 2 cores are 10x too low, and idle OpenMP threads spin and burn CPU under contention). ``--clock wall``
uses wall time and the threads of ``common.config.set_cpu_threads`` (``--threads`` to choose): what a
student sees on a quiet machine. The load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from bench.tables import cpu_description
from common.config import set_cpu_threads
from common.data.augment import Augment
from common.data.torch_data import TensorBatches
from common.torch_models.vgg import VGG, VGGConfig
from common.training.params import count_parameters

#: The notebook's model width (keep in sync with assignment2/CNN_CIFAR10.ipynb).
NOTEBOOK_WIDTH = 0.25
SHAPES = {"fashion_mnist": (1, 28), "cifar10": (3, 32)}


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCK["cpu"]


def best_rate(fn, num_images: int, repeats: int) -> float:
    """Images per second of ``fn()`` (which processes ``num_images``): best of ``repeats`` after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return num_images / best


def bench_model(
    cfg: VGGConfig,
    channels_last: bool,
    compile_: bool,
    batch_size: int,
    eval_batch: int,
    steps: int,
    repeats: int,
    bf16: bool = False,
) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGG(cfg)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    run = torch.compile(model) if compile_ else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(batch_size, cfg.in_channels, cfg.image_size, cfg.image_size).contiguous(memory_format=fmt)
    y = torch.randint(0, cfg.num_classes, (batch_size,))
    xe = torch.randn(eval_batch, cfg.in_channels, cfg.image_size, cfg.image_size).contiguous(memory_format=fmt)

    def train_steps():
        model.train()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(run(x), y)
            loss.backward()
            opt.step()

    @torch.no_grad()
    def infer_steps():
        model.eval()
        for _ in range(max(1, steps // 2)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                run(xe)

    begin = time.perf_counter()
    train_steps()  # the first step of a compiled model compiles it
    first = time.perf_counter() - begin
    return {
        "first_s": first,
        "params": count_parameters(model),
        "train": best_rate(train_steps, steps * batch_size, repeats),
        "infer": best_rate(infer_steps, max(1, steps // 2) * eval_batch, repeats),
    }


def bench_pipeline(shape: tuple[int, int], batch_size: int, repeats: int, N: int = 10_000) -> float:
    """Images/s of shuffling + random crop + flip alone (no model)."""
    C, S = shape
    X, y = torch.randn(N, C, S, S), torch.randint(0, 10, (N,))
    batches = TensorBatches(
        X, y, batch_size=batch_size, shuffle=True, seed=0, transform=Augment(padding=2 if S == 28 else 4)
    )
    return best_rate(lambda: [None for _ in batches], N, repeats)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[NOTEBOOK_WIDTH])
    parser.add_argument("--datasets", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument(
        "--clock",
        choices=list(CLOCK),
        default="cpu",
        help="cpu: one thread, process CPU time (robust to load); wall: wall time",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads with --clock wall (default: the course's policy, set_cpu_threads)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--bf16", action="store_true", help="also measure bfloat16 autocast")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    set_cpu_threads(1 if args.clock == "cpu" else args.threads)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"{cpu_description()}, "
        f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    rows = []
    for name in args.datasets:
        C, S = SHAPES[name]
        rows.append(
            {
                "dataset": name,
                "width": "-",
                "variant": "data pipeline (shuffle+crop+flip)",
                "params": "-",
                "train": bench_pipeline((C, S), args.batch_size, args.repeats),
                "infer": float("nan"),
            }
        )
        for width in args.widths:
            cfg = VGGConfig(in_channels=C, image_size=S, width=width)
            variants = [("NCHW", False, False, False), ("channels_last", True, False, False)]
            if args.bf16:
                variants.append(("channels_last + bf16", True, False, True))
            if args.compile:
                variants.append(("channels_last + compile", True, True, False))
            if args.compile and args.bf16:
                variants.append(("channels_last + compile + bf16", True, True, True))
            for label, cl, comp, bf16 in variants:
                r = bench_model(cfg, cl, comp, args.batch_size, args.eval_batch, args.steps, args.repeats, bf16)
                rows.append({"dataset": name, "width": width, "variant": label, **r})
                print(
                    f"{name:<14} width {width:<5} {label:<30} params {r['params']:>10,}  "
                    f"train {r['train']:8.0f} img/s  infer {r['infer']:8.0f} img/s  "
                    f"first {args.steps} steps {r['first_s']:.1f} s",
                    flush=True,
                )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for r in rows:
        if r["variant"].startswith("data"):
            print(f"{r['dataset']:<14} data pipeline alone (TensorBatches + Augment): {r['train']:,.0f} img/s")
    if args.markdown:
        print("\n| dataset shape | width | variant | params | train img/s | inference img/s | first steps s |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            params = f"{r['params']:,}" if isinstance(r["params"], int) else r["params"]
            infer = "-" if r["infer"] != r["infer"] else f"{r['infer']:,.0f}"
            first = f"{r['first_s']:.1f}" if "first_s" in r else "-"
            print(
                f"| {r['dataset']} | {r['width']} | {r['variant']} | {params} | {r['train']:,.0f} | {infer} | {first} |"
            )
    return rows


if __name__ == "__main__":
    main()
