"""CPU thread policy: wall time of a fixed amount of the course's CPU work with 1 or 2 torch threads, on a quiet
machine and next to competing processes that the benchmark starts itself.

Run from the repository root, under the shared lock on a shared machine:

    python -m bench.threads              # every policy under every load, plain table
    python -m bench.threads --markdown   # also the table as Markdown (for bench/RESULTS.md)
    python -m bench.threads --scale 1    # twice the work per timed run (steadier figures, longer)

Each measurement is a fresh worker process (``--worker``), so that ``OMP_WAIT_POLICY`` (read once, when torch
loads its OpenMP runtime) can differ between runs. A worker warms up, then times each workload three times (the
median is reported): a few training steps of the CNN notebook's reduced VGG on 1x28x28 images, a few D and G steps
of the GAN notebook's MLP GAN, a small MLP on MNIST-sized inputs, the tiny MLP of the PyTorch notebook, and a vanilla
RNN on palindrome-sized sequences, and a NumPy workload: forward and backward passes of the FullyConnectedNets
notebook's two-layer net (width 300) on CIFAR-10-sized inputs, whose matrix products run in NumPy's BLAS library with
as many threads as the policy gives torch (the course's ``load-aware`` policy: ``common.config.set_numpy_threads``, as
the NumPy notebooks call it; NumPy's own default is every CPU, the ``2 threads`` row on 2 CPUs). Policies: a fixed
count of 1 or 2 threads (2 also with passive waiting), and the course's ``load-aware`` policy: one thread, but the
VGG and the GAN under one ``common.config.LoadAwareThreads`` (every CPU while nothing else is busy), as the notebooks
train them. Loads:

- ``quiet``: nothing else runs (check the load average printed before and after);
- ``1 hog``: one single-threaded NumPy matrix-product loop keeps the other core busy;
- ``2 hogs`` (only with ``--loads``): two such loops, about the load of two other notebooks on 2 cores;
- ``peer``: a second worker with the same policy runs the same workloads in a loop: two notebooks that both
  follow the policy, side by side (as CI runs them).

Figures are wall seconds for the whole workload (lower is better) and, in brackets, the worker's CPU seconds
summed over its threads: wall time above CPU time means the worker waited for a core; CPU time far above the
quiet figure means its threads spun while waiting for each other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

#: Policies measured: (label, torch threads, OMP_WAIT_POLICY or None for the runtime's default, load-aware).
#: "load-aware" is the course's: one thread per two CPUs, and ``common.config.LoadAwareThreads`` for the
#: workloads in ``LOAD_AWARE`` (every CPU while nothing else is busy).
POLICIES = (
    ("1 thread", 1, None, False),
    ("2 threads", 2, None, False),
    ("2 threads, passive", 2, "PASSIVE", False),
    ("load-aware", 1, None, True),
)
LOADS = ("quiet", "1 hog", "2 hogs", "peer")
WORKLOADS = ("vgg", "gan_mlp", "mlp_mnist", "mlp_tiny", "rnn", "fcn_numpy")
#: The workloads the course trains under ``LoadAwareThreads`` (the CNN notebook's VGG, the GAN notebook).
LOAD_AWARE = ("vgg", "gan_mlp")
#: Timed runs of each workload per worker; the median is reported.
REPEATS = 3
#: Seconds every worker spends warming up before it times anything.
WARM_UP_S = 1.5

_HOG = (
    "import numpy as np\n"
    "a = np.random.default_rng(0).standard_normal((300, 300))\n"
    "while True:\n"
    "    a = np.tanh(a @ a / 300)\n"
)


def _workloads(scale: float, poll=None) -> dict:
    """name -> (warm-up, timed run) callables; each timed run is a fixed amount of training work. ``poll`` (a
    ``LoadAwareThreads.poll``) is called before each step of the workloads in ``LOAD_AWARE``."""
    import torch
    from torch import nn

    from common.torch_models.gan import GANConfig, build_gan, discriminator_loss, generator_loss
    from common.torch_models.mlp import MLP, MLPConfig
    from common.torch_models.rnn import RNNConfig, VanillaRNN
    from common.torch_models.vgg import VGG, VGGConfig

    g = torch.Generator().manual_seed(0)

    def looped(step, steps, before=None):
        def run(n=steps):
            for _ in range(n):
                if before is not None:
                    before()
                step()

        return (lambda: run(1)), run

    def trainer(model, x, y, steps, lr=0.01, clip=None, before=None):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()

        return looped(step, steps, before)

    def gan_trainer(steps, before=None):
        G, D = build_gan(GANConfig(), seed=0)
        opt_g, opt_d = (torch.optim.Adam(m.parameters(), 1e-3, betas=(0.5, 0.999)) for m in (G, D))
        x_real = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1

        def step():  # one D step and one G step, as common.experiments.gan trains them
            z = torch.randn(128, G.config.latent_dim, generator=g)
            loss_d = discriminator_loss(D(x_real), D(G(z[:64]).detach()))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = generator_loss(D(G(z[64:])))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

        return looped(step, steps, before)

    def steps(n):
        return max(1, round(n * scale))

    def fcn_numpy(steps):  # the NumPy notebooks' kind of work: matrix products in NumPy's BLAS, elementwise rest
        import numpy as np

        from common.classifiers.fc_net import FullyConnectedNet

        rng = np.random.default_rng(0)
        model = FullyConnectedNet([300, 300], input_dim=3072, weight_scale=5e-2, seed=0)
        X = rng.standard_normal((200, 3072)).astype(np.float32)
        y = rng.integers(0, 10, 200)

        def step():
            _, grads = model.loss(X, y)
            for name, grad in grads.items():
                model.params[name] -= 1e-3 * grad

        return looped(step, steps)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vgg = VGG(VGGConfig(in_channels=1, image_size=28, width=0.25)).to(memory_format=torch.channels_last)
    x_img = torch.randn(128, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    x_mnist, x_tiny = torch.randn(128, 784, generator=g), torch.randn(32, 2, generator=g)
    x_seq = torch.nn.functional.one_hot(torch.randint(0, 10, (128, 19), generator=g), 10).float()
    labels = torch.randint(0, 10, (128,), generator=g)
    return {
        "vgg": trainer(vgg, x_img, labels, steps(8), before=poll),
        "gan_mlp": gan_trainer(steps(40), before=poll),
        "mlp_mnist": trainer(MLP(MLPConfig(784, [256, 256], 10), generator=g), x_mnist, labels, steps(250)),
        "mlp_tiny": trainer(MLP(MLPConfig(2, [20, 20], 2), generator=g), x_tiny, labels[:32] % 2, steps(1500)),
        "rnn": trainer(VanillaRNN(RNNConfig(10, 128, 10), generator=g), x_seq, labels, steps(60), clip=10.0),
        "fcn_numpy": fcn_numpy(steps(60)),
    }


def worker(threads: int, scale: float, loop: bool, load_aware: bool = False) -> None:
    """Time each workload ``REPEATS`` times after a warm-up and print the median run's
    ``{name: [wall s, cpu s]}`` as JSON; with ``loop``, keep running them (a peer load) until killed. With
    ``load_aware`` the workloads in ``LOAD_AWARE`` run under one ``LoadAwareThreads`` (as the course trains its
    convnet and its GANs) and the others with ``threads``."""
    import torch

    from common.config import LoadAwareThreads, set_numpy_threads

    torch.set_num_threads(threads)
    set_numpy_threads(None if load_aware else threads)  # load-aware: the course's policy for NumPy
    aware = LoadAwareThreads().__enter__() if load_aware else None  # one reading of the load for the whole run
    work = _workloads(scale, poll=None if aware is None else aware.poll)

    def run(name, fn):
        if name not in LOAD_AWARE:
            torch.set_num_threads(threads)  # the policy's count (the load-aware runs switch it before each step)
        return fn()

    # The same warm-up for every policy, long enough for the load-aware policy's first reading of the load (as
    # a real training run has) and for oneDNN to have built its kernels for every workload.
    deadline = time.perf_counter() + WARM_UP_S
    while time.perf_counter() < deadline:
        for name, (warm, _) in work.items():
            run(name, warm)
    while loop:
        for name, (_, timed) in work.items():
            run(name, timed)
    result = {}
    for name, (_, timed) in work.items():
        times = []
        for _ in range(REPEATS):
            wall, cpu = time.perf_counter(), time.process_time()
            run(name, timed)
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        result[name] = sorted(times)[REPEATS // 2]  # the run with the median wall time
    print(json.dumps(result))


def _env(wait_policy: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    return env


def _worker_cmd(threads: int, scale: float, load_aware: bool, loop: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "bench.threads", "--worker", "--threads", str(threads), "--scale", str(scale)]
    return cmd + ["--load-aware"] * load_aware + ["--loop"] * loop


def _start_load(
    load: str, threads: int, wait_policy: str | None, scale: float, load_aware: bool
) -> list[subprocess.Popen]:
    if load == "quiet":
        return []
    if load == "peer":
        cmd = _worker_cmd(threads, scale, load_aware, loop=True)
        procs = [subprocess.Popen(cmd, env=_env(wait_policy), stdout=subprocess.DEVNULL)]
        time.sleep(3.0)  # let it import torch and start training
        return procs
    env = {**_env(None), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _HOG], env=env) for _ in range(int(load.split()[0]))]
    time.sleep(0.5)
    return procs


def measure(threads: int, wait_policy: str | None, load: str, scale: float, load_aware: bool = False) -> dict:
    """One worker's ``{workload: [wall, cpu]}`` under ``load``."""
    procs = _start_load(load, threads, wait_policy, scale, load_aware)
    try:
        cmd = _worker_cmd(threads, scale, load_aware)
        out = subprocess.run(cmd, env=_env(wait_policy), capture_output=True, text=True, check=True).stdout
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return json.loads(out.strip().splitlines()[-1])


def _loadavg() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--loads",
        nargs="+",
        default=[x for x in LOADS if x != "2 hogs"],
        choices=LOADS,
        help="default: all but '2 hogs' (which adds little to '1 hog'), to keep the run short",
    )
    parser.add_argument("--scale", type=float, default=0.5, help="multiply the work of every workload")
    parser.add_argument(
        "--policies", nargs="+", choices=[p[0] for p in POLICIES], help="measure only these (default: all)"
    )
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--load-aware", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.threads, args.scale, args.loop, args.load_aware)
        return []

    import torch

    from bench.tables import cpu_description

    print(f"{cpu_description()}; {os.cpu_count()} logical CPUs", flush=True)
    print(f"torch {torch.__version__}, load average before: {_loadavg()}", flush=True)
    rows, start = [], time.perf_counter()
    for load in args.loads:
        for label, threads, policy, load_aware in POLICIES:
            if args.policies and label not in args.policies:
                continue
            r = measure(threads, policy, load, args.scale, load_aware)
            rows.append({"load": load, "policy": label, **r})
            cells = "  ".join(f"{w} {r[w][0]:6.2f} ({r[w][1]:5.2f})" for w in WORKLOADS)
            print(f"{load:<7} {label:<20} {cells}", flush=True)
    print(f"load average after: {_loadavg()}; {time.perf_counter() - start:.0f} s in all")
    if args.markdown:
        print("\n| load | policy | " + " | ".join(f"{w} wall s (CPU s)" for w in WORKLOADS) + " | total wall s |")
        print("|---|---|" + "---|" * (len(WORKLOADS) + 1))
        for r in rows:
            cells = " | ".join(f"{r[w][0]:.2f} ({r[w][1]:.2f})" for w in WORKLOADS)
            print(f"| {r['load']} | {r['policy']} | {cells} | {sum(r[w][0] for w in WORKLOADS):.2f} |")
    return rows


if __name__ == "__main__":
    main()
