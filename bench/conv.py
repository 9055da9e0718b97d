"""Speed of convolution and max pooling: naive loops vs im2col (Cython and NumPy) vs PyTorch, one run.

Run from the repository root:

    python -m bench.conv                  # 1 BLAS/torch thread, CPU-time clock (stable on a shared machine)
    python -m bench.conv --threads 2      # as many threads as you have cores
    python -m bench.conv --markdown       # also print the tables as Markdown (for bench/RESULTS.md)

Shapes (from the issue): the CS231n layer (x 100x3x31x31, w 25x3x3x3, stride 2, pad 1) and a VGG-sized
layer (x 64x64x16x16, w 128x64x3x3, stride 1, pad 1); max pool 2x2 stride 2 on 100x3x32x32 (reshape trick)
and 3x3 stride 2 on 100x3x31x31 (im2col). The naive conv runs once and only on the CS231n shape (on the VGG
layer it would take minutes); every other time is the minimum over at least ``--repeats`` runs (more
while under one second has been spent). All ratios in one
report come from the same run, which is what makes them comparable on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from bench.tables import cpu_description, render_table
from common import fast_layers, layers

CONV_CASES = {
    "cs231n": dict(x=(100, 3, 31, 31), w=(25, 3, 3, 3), stride=2, pad=1, naive=True),
    "vgg": dict(x=(64, 64, 16, 16), w=(128, 64, 3, 3), stride=1, pad=1, naive=False),
}
POOL_CASES = {
    "2x2/2 (reshape)": dict(x=(100, 3, 32, 32), pool=2, stride=2),
    "3x3/2 (im2col)": dict(x=(100, 3, 31, 31), pool=3, stride=2),
}
# (description, numerator, denominator, minimum ratio): ratio = time[numerator] / time[denominator]
TARGETS = [
    ("fast conv forward vs naive (cs231n)", ("cs231n", "naive", "fwd"), ("cs231n", "fast", "fwd"), 200.0),
    ("fast conv backward vs naive (cs231n)", ("cs231n", "naive", "bwd"), ("cs231n", "fast", "bwd"), 400.0),
    ("torch f64 fwd+bwd vs fast (cs231n)", ("cs231n", "torch f64", "f+b"), ("cs231n", "fast", "f+b"), 1 / 3),
    ("torch f64 fwd+bwd vs fast (vgg)", ("vgg", "torch f64", "f+b"), ("vgg", "fast", "f+b"), 1 / 1.5),
]


#: The clock every measurement uses; main() picks CPU time of the process for single-threaded runs.
CLOCK = time.perf_counter


def best_time(fn, repeats: int, budget: float = 1.0, max_runs: int = 200) -> float:
    """Minimum time of ``fn()`` in seconds on ``CLOCK``, after one warm-up call.

    Runs at least ``repeats`` times and keeps going (up to ``max_runs``) while less than ``budget``
    seconds have been spent: on a machine shared with other jobs, the minimum of many runs is the
    best estimate of the undisturbed time.
    """
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < budget and len(times) < max_runs):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return min(times)


def once(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def _warm_up(x, w, b, conv_param, backends, rng, rounds: int = 3):
    """Run every implementation's forward and backward a few times before anything is timed.

    glibc's malloc adapts its mmap/trim thresholds to the sizes it has seen; until it has seen the
    backward pass's arrays, every multi-MB allocation is fresh memory and page-faults (on a loaded VM
    this cost 30 ms of a 2 ms forward pass). Warming all implementations first gives each the same state.
    """
    import torch
    import torch.nn.functional as F

    for _ in range(rounds):
        for backend in backends:
            out, cache = fast_layers.conv_forward_fast(x, w, b, conv_param, backend=backend)
            fast_layers.conv_backward_fast(rng.standard_normal(out.shape), cache)
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        out_t = F.conv2d(xt, wt, bt, stride=conv_param["stride"], padding=conv_param["pad"])
        out_t.backward(torch.ones_like(out_t))


def bench_conv(case: dict, repeats: int, rng: np.random.Generator) -> dict:
    """Times (seconds) keyed (implementation, 'fwd' | 'bwd' | 'f+b')."""
    import torch
    import torch.nn.functional as F

    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0])
    conv_param = {"stride": case["stride"], "pad": case["pad"]}
    times = {}
    backends = ["cython", "numpy"] if fast_layers.HAVE_CYTHON else ["numpy"]
    _warm_up(x, w, b, conv_param, backends, rng)
    for backend in backends:
        name = "fast" if backend == backends[0] else "fast (numpy)"
        out, cache = fast_layers.conv_forward_fast(x, w, b, conv_param, backend=backend)
        dout = rng.standard_normal(out.shape)
        times[name, "fwd"] = best_time(
            lambda: fast_layers.conv_forward_fast(x, w, b, conv_param, backend=backend), repeats
        )
        times[name, "bwd"] = best_time(lambda: fast_layers.conv_backward_fast(dout, cache), repeats)
        times[name, "f+b"] = times[name, "fwd"] + times[name, "bwd"]
    for dtype, label in ((torch.float64, "torch f64"), (torch.float32, "torch f32")):
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        wt = torch.tensor(w, dtype=dtype, requires_grad=True)
        bt = torch.tensor(b, dtype=dtype, requires_grad=True)
        dt = torch.tensor(dout, dtype=dtype)

        def forward():
            return F.conv2d(xt, wt, bt, stride=case["stride"], padding=case["pad"])

        def forward_no_grad():
            with torch.no_grad():
                return forward()

        out_t = forward()
        times[label, "fwd"] = best_time(forward_no_grad, repeats)
        times[label, "bwd"] = best_time(
            lambda: torch.autograd.grad(out_t, (xt, wt, bt), dt, retain_graph=True), repeats
        )
        times[label, "f+b"] = times[label, "fwd"] + times[label, "bwd"]
    if case["naive"]:
        out, cache = layers.conv_forward_naive(x, w, b, conv_param)
        times["naive", "fwd"] = once(lambda: layers.conv_forward_naive(x, w, b, conv_param))
        times["naive", "bwd"] = once(lambda: layers.conv_backward_naive(dout, cache))
        times["naive", "f+b"] = times["naive", "fwd"] + times["naive", "bwd"]
    return times


def bench_pool(case: dict, repeats: int, rng: np.random.Generator) -> dict:
    import torch
    import torch.nn.functional as F

    x = rng.standard_normal(case["x"])
    pool_param = {"pool_height": case["pool"], "pool_width": case["pool"], "stride": case["stride"]}
    out, cache = fast_layers.max_pool_forward_fast(x, pool_param)
    dout = rng.standard_normal(out.shape)
    times = {
        ("fast", "fwd"): best_time(lambda: fast_layers.max_pool_forward_fast(x, pool_param), repeats),
        ("fast", "bwd"): best_time(lambda: fast_layers.max_pool_backward_fast(dout, cache), repeats),
    }
    xt = torch.tensor(x, requires_grad=True)
    out_t = F.max_pool2d(xt, case["pool"], stride=case["stride"])
    with torch.no_grad():
        times["torch f64", "fwd"] = best_time(lambda: F.max_pool2d(xt, case["pool"], stride=case["stride"]), repeats)
    times["torch f64", "bwd"] = best_time(
        lambda: torch.autograd.grad(out_t, xt, torch.tensor(dout), retain_graph=True), repeats
    )
    out_n, cache_n = layers.max_pool_forward_naive(x, pool_param)
    times["naive", "fwd"] = once(lambda: layers.max_pool_forward_naive(x, pool_param))
    times["naive", "bwd"] = once(lambda: layers.max_pool_backward_naive(dout, cache_n))
    return times


def machine_summary(threads: int) -> str:
    import torch

    cpu = cpu_description()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs; load average (1/5/15 min) {load}; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}; "
        f"threads: {threads}; Cython extension built: {fast_layers.HAVE_CYTHON}"
    )


def format_table(title: str, times: dict, markdown: bool) -> str:
    impls = list(dict.fromkeys(k[0] for k in times))
    cols = [c for c in ("fwd", "bwd", "f+b") if any(k[1] == c for k in times)]
    ref = "fast"
    header = ["impl"] + [f"{c} ms" for c in cols] + [f"{c} / fast" for c in cols]
    rows = []
    for impl in impls:
        row = [impl] + [f"{1e3 * times[impl, c]:.2f}" for c in cols]
        row += [f"{times[impl, c] / times[ref, c]:.2f}x" for c in cols]
        rows.append(row)
    return render_table(header, rows, markdown, title)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per fast/torch timing (minimum is kept)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock",
        choices=("auto", "cpu", "wall"),
        default="auto",
        help="cpu: the process's CPU time (not inflated by other jobs on a shared machine; "
        "meaningful with --threads 1); wall: elapsed time; auto: cpu if --threads 1",
    )
    args = parser.parse_args(argv)
    global CLOCK
    use_cpu = args.clock == "cpu" or (args.clock == "auto" and args.threads == 1)
    CLOCK = time.process_time if use_cpu else time.perf_counter

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    print(machine_summary(args.threads) + f"; clock: {'process CPU time' if use_cpu else 'wall time'}")
    results = {}
    with threadpool_limits(args.threads):
        for name, case in CONV_CASES.items():
            results[name] = bench_conv(case, args.repeats, rng)
            print(
                format_table(
                    f"conv {name}: x {case['x']}, w {case['w']}, stride {case['stride']}, pad {case['pad']}",
                    results[name],
                    args.markdown,
                ),
                flush=True,
            )
            print()
        for name, case in POOL_CASES.items():
            results["pool " + name] = times = bench_pool(case, args.repeats, rng)
            print(format_table(f"max pool {name}: x {case['x']}", times, args.markdown), flush=True)
            print()
    print(f"load average after the run: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("targets (ratios from this run):")
    for desc, num, den, minimum in TARGETS:
        ratio = results[num[0]][num[1:]] / results[den[0]][den[1:]]
        print(f"  {desc}: {ratio:.2f}x (target >= {minimum:.2f}x) {'PASS' if ratio >= minimum else 'MISS'}")
    for name in POOL_CASES:
        t = results["pool " + name]
        for d in ("fwd", "bwd"):
            ratio = t["naive", d] / t["fast", d]
            print(f"  fast pool {name} {d} vs naive: {ratio:.0f}x (target >= 50x) {'PASS' if ratio >= 50 else 'MISS'}")
    return results


if __name__ == "__main__":
    main()
