"""Do the checks name the mistakes students make? ``python -m instructor.mistakes`` (``make mistakes``).

``MISTAKES`` is a catalogue of common mistakes across the course, each a text substitution inside one
solution block of the instructor tree (the mistake as a student would write it) and the words its failure
message must contain to count as naming it. For each mistake the harness copies the tree, applies the
substitution, runs the unit tests that call the function by name (``instructor.reach``; the other tests
that can reach it only when none of those fails), reads the JUnit report, and takes the message of the
first failing check in the order the student's checklist shows them (``tools.checklist``). A mistake is
*caught* when a check fails and *named* when that message contains every one of its words.

Prints the table (also written to ``dist/mistakes.md``) and exits 1 unless every mistake is caught and at
least ``NAMED_SHARE`` of them are named. Runs in two worker trees side by side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from instructor.markers import Block, all_blocks, parse_python
from instructor.reach import ReachMap
from instructor.workspace import QUICK_CHECK_ENV, copy_instructor_tree
from tools.checklist import checks_of, read_junit

ROOT = Path(__file__).resolve().parent.parent
#: The share of mistakes whose message must name them.
NAMED_SHARE = 0.9
#: Test folders the harness leaves out: the grader's own tests, and hidden tests (students never read them).
SKIPPED_TESTS = ("tests/grading/", "tests/hidden/")


@dataclass(frozen=True)
class Mistake:
    """One common mistake: where, the edit that makes it, and the words that name it."""

    id: str
    block: str  # the solution block it is made in: '<file>::<function>'
    what: str  # the mistake in words
    edits: tuple[tuple[str, str], ...]  # (old, new): each ``old`` occurs exactly once in the block
    words: tuple[str, ...]  # the failure message must contain every one (case-insensitive)


def _m(id, block, what, edits, words):
    if isinstance(edits[0], str):
        edits = (edits,)
    return Mistake(id, block, what, tuple(tuple(e) for e in edits), tuple(words))


L, R, O = "common/layers.py::", "common/rnn_layers.py::", "common/optim.py::"
KNN = "common/classifiers/k_nearest_neighbor.py::KNearestNeighbor."

MISTAKES = [
    # ------------------------------------------------------------------ affine, activations, losses
    _m(
        "affine-db-mean",
        L + "affine_backward",
        "db averaged over the batch instead of summed",
        ("db = dout.sum(axis=0)", "db = dout.mean(axis=0)"),
        ["average over the batch"],
    ),
    _m(
        "affine-dw-transposed",
        L + "affine_backward",
        "dw computed as dout.T @ x (the transpose)",
        ("dw = x_flat.T @ dout", "dw = dout.T @ x_flat"),
        ["transpose"],
    ),
    _m(
        "affine-no-bias",
        L + "affine_forward",
        "the bias left out of the forward pass",
        ("out = x.reshape(N, D) @ w + b", "out = x.reshape(N, D) @ w"),
        ["bias"],
    ),
    _m(
        "relu-mask-from-dout",
        L + "relu_backward",
        "ReLU's mask taken from dout > 0 instead of x > 0",
        ("dx = dout * (x > 0)", "dx = dout * (dout > 0)"),
        ["dout > 0"],
    ),
    _m(
        "leaky-relu-zero-slope",
        L + "leaky_relu_backward",
        "leaky ReLU's backward with slope 0 (a plain ReLU) for negative inputs",
        ("np.where(x > 0, 1.0, alpha)", "np.where(x > 0, 1.0, 0.0)"),
        ["x < 0"],
    ),
    _m(
        "sigmoid-no-1-minus-s",
        L + "sigmoid_backward",
        "sigmoid's derivative without its (1 - s) factor",
        ("dx = dout * s * (1 - s)", "dx = dout * s"),
        ["(1 - s)"],
    ),
    _m(
        "tanh-derivative",
        L + "tanh_backward",
        "tanh's derivative written 1 - t instead of 1 - t**2",
        ("dx = dout * (1 - t * t)", "dx = dout * (1 - t)"),
        ["1 - t**2"],
    ),
    _m(
        "prelu-dalpha-mean",
        L + "prelu_backward",
        "PReLU's dalpha averaged over the batch instead of summed",
        ("negative_part.sum(axis=0) if", "negative_part.mean(axis=0) if"),
        ["average over the batch"],
    ),
    _m(
        "softmax-loss-not-averaged",
        L + "softmax_loss",
        "the softmax loss summed over the batch, not averaged (dx still averaged)",
        ("loss = -log_probs[np.arange(N), y].sum() / N", "loss = -log_probs[np.arange(N), y].sum()"),
        ["divide by N"],
    ),
    _m(
        "svm-dx-not-averaged",
        L + "svm_loss",
        "the SVM's dx not divided by N",
        ("    dx /= N\n", ""),
        ["divide by N"],
    ),
    _m(
        "svm-correct-class-margin",
        L + "svm_loss",
        "the correct class's own margin (always 1) counted in the SVM loss",
        ("    margins[rows, y] = 0\n", ""),
        ["correct class"],
    ),
    # ------------------------------------------------------------------ normalisation, dropout
    _m(
        "bn-test-batch-stats",
        L + "batchnorm_forward",
        "batch norm in test mode normalising with the batch's statistics instead of the running averages",
        (
            "out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
            "out = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta",
        ),
        ["batch statistics", "running"],
    ),
    _m(
        "bn-momentum-swapped",
        L + "batchnorm_forward",
        "momentum and 1 - momentum swapped in the running mean",
        (
            "running_mean = momentum * running_mean + (1 - momentum) * mu",
            "running_mean = (1 - momentum) * running_mean + momentum * mu",
        ),
        ["momentum"],
    ),
    _m(
        "bn-unbiased-variance",
        L + "batchnorm_forward",
        "batch norm with the unbiased variance (ddof=1)",
        ("var = (xc**2).mean(axis=0)", "var = x.var(axis=0, ddof=1)"),
        ["unbiased"],
    ),
    _m(
        "bn-backward-no-mean-path",
        L + "batchnorm_backward",
        "batch norm's backward pass without the path through the batch mean",
        ("dx = dxc + dmu / N", "dx = dxc"),
        ["mean"],
    ),
    _m(
        "bn-alt-no-1-over-N",
        L + "batchnorm_backward_alt",
        "the closed-form batch norm backward without its 1/N",
        ("dx = (gamma * inv_std / N) *", "dx = (gamma * inv_std) *"),
        ["divide by N"],
    ),
    _m(
        "layernorm-wrong-axis",
        L + "layernorm_forward",
        "layer norm's statistics over the batch (axis 0) instead of each sample's features",
        (
            ("mu = x.mean(axis=1, keepdims=True)", "mu = x.mean(axis=0, keepdims=True)"),
            ("var = (xc**2).mean(axis=1, keepdims=True)", "var = (xc**2).mean(axis=0, keepdims=True)"),
        ),
        ["axis"],
    ),
    _m(
        "layernorm-dgamma-axis",
        L + "layernorm_backward",
        "layer norm's dgamma summed over the features instead of the batch",
        ("dgamma = (dout * xhat).sum(axis=0)", "dgamma = (dout * xhat).sum(axis=1)"),
        ["wrong axis"],
    ),
    _m(
        "dropout-not-rescaled",
        L + "dropout_forward",
        "inverted dropout without the 1/p",
        ("mask = ((rng.random(x.shape) < p) / p)", "mask = (rng.random(x.shape) < p)"),
        ["1/p"],
    ),
    _m(
        "dropout-p-as-drop",
        L + "dropout_forward",
        "p taken as the probability of dropping a unit",
        ("rng.random(x.shape) < p", "rng.random(x.shape) >= p"),
        ["KEEP"],
    ),
    _m(
        "dropout-backward-no-1-over-p",
        L + "dropout_backward",
        "dropout's backward pass with the 0/1 pattern, without the 1/p",
        ("dx = dout * mask", "dx = dout * (mask != 0)"),
        ["1/p"],
    ),
    # ------------------------------------------------------------------ convolution and pooling
    _m(
        "conv-no-bias",
        L + "conv_forward_naive",
        "the convolution without its bias",
        ("out[n, f, i, j] = np.sum(window * w[f]) + b[f]", "out[n, f, i, j] = np.sum(window * w[f])"),
        ["bias"],
    ),
    _m(
        "conv-flipped-kernel",
        L + "conv_forward_naive",
        "a true convolution (kernel flipped) instead of the cross-correlation of DL libraries",
        ("np.sum(window * w[f])", "np.sum(window * w[f, :, ::-1, ::-1])"),
        ["flipped"],
    ),
    _m(
        "conv-db-mean",
        L + "conv_backward_naive",
        "the convolution's db averaged instead of summed",
        ("db = dout.sum(axis=(0, 2, 3))", "db = dout.mean(axis=(0, 2, 3))"),
        ["mean"],
    ),
    _m(
        "conv-dx-padded",
        L + "conv_backward_naive",
        "the convolution's dx returned with its padding",
        ("dx = dx_pad[:, :, pad : pad + H, pad : pad + W]", "dx = dx_pad"),
        ["padding"],
    ),
    _m(
        "maxpool-grad-to-window",
        L + "max_pool_backward_naive",
        "max pooling's gradient sent to the whole window instead of its maximum",
        (
            "dx[n, c, i * stride + k, j * stride + m] += dout[n, c, i, j]",
            "dx[n, c, i * stride : i * stride + ph, j * stride : j * stride + pw] += dout[n, c, i, j]",
        ),
        ["maximum"],
    ),
    _m(
        "spatial-bn-reshape",
        L + "spatial_batchnorm_forward",
        "spatial batch norm's output reshaped back to (N, C, H, W) without moving the channels first",
        ("out = out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "out = out_flat.reshape(N, C, H, W)"),
        ["wrong places"],
    ),
    _m(
        "groupnorm-one-group",
        L + "spatial_groupnorm_forward",
        "group norm with one group per sample (layer norm) whatever G is",
        ("xg = x.reshape(N, G, -1)", "xg = x.reshape(N, 1, -1)"),
        ["one group"],
    ),
    _m(
        "groupnorm-dgamma-shape",
        L + "spatial_groupnorm_backward",
        "group norm's dgamma without keepdims (shape (C,) instead of (1, C, 1, 1))",
        ("dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)", "dgamma = (dout * xhat).sum(axis=(0, 2, 3))"),
        ["another shape"],
    ),
    # ------------------------------------------------------------------ recurrent layers
    _m(
        "rnn-step-dWh-transposed",
        R + "rnn_step_backward",
        "the RNN step's dWh computed as da.T @ prev_h (the transpose)",
        ("prev_h.T @ da, da.sum(axis=0)", "da.T @ prev_h, da.sum(axis=0)"),
        ["transpose"],
    ),
    _m(
        "rnn-forward-shifted",
        R + "rnn_forward",
        "each hidden state stored before the step that computes it (off by one in time)",
        (
            "prev_h, step_cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)\n        h[:, t] = prev_h",
            "h[:, t] = prev_h\n        prev_h, step_cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)",
        ),
        ["shifted"],
    ),
    _m(
        "rnn-backward-no-carry",
        R + "rnn_backward",
        "the RNN backward pass dropping the gradient that reaches h_t from step t+1",
        ("rnn_step_backward(dh[:, t] + dprev_h, cache[t])", "rnn_step_backward(dh[:, t], cache[t])"),
        ["step t+1"],
    ),
    _m(
        "lstm-gate-order",
        R + "lstm_step_forward",
        "LSTM gates taken in PyTorch's order i, f, g, o instead of i, f, o, g",
        (
            "_sigmoid(a[:, 2 * H : 3 * H])\n    g = np.tanh(a[:, 3 * H :])",
            "_sigmoid(a[:, 3 * H :])\n    g = np.tanh(a[:, 2 * H : 3 * H])",
        ),
        ["order"],
    ),
    _m(
        "lstm-backward-gate-order",
        R + "lstm_step_backward",
        "the LSTM step's gate gradients concatenated in the order i, f, g, o",
        (
            "do * o * (1 - o), dg * (1 - g**2)]",
            "dg * (1 - g**2), do * o * (1 - o)]",
        ),
        ["order"],
    ),
    _m(
        "lstm-backward-no-cell-carry",
        R + "lstm_backward",
        "the LSTM backward pass dropping the cell state's gradient from step t+1",
        ("(dh[:, t] + dprev_h, dprev_c, cache[t])", "(dh[:, t] + dprev_h, np.zeros_like(dprev_c), cache[t])"),
        ["step t+1"],
    ),
    _m(
        "embedding-not-accumulated",
        R + "word_embedding_backward",
        "the embedding gradient written with dW[x] += dout, which keeps one contribution per repeated word",
        ("np.add.at(dW, x, dout)", "dW[x] += dout"),
        ["more than once"],
    ),
    # ------------------------------------------------------------------ update rules
    _m(
        "momentum-sign",
        O + "sgd_momentum",
        "the velocity update with + lr * dw",
        ('- config["learning_rate"] * dw', '+ config["learning_rate"] * dw'),
        ["sign"],
    ),
    _m(
        "rmsprop-no-sqrt",
        O + "rmsprop",
        "RMSProp dividing by the cache instead of its square root",
        ("dw / (np.sqrt(cache) + config", "dw / (cache + config"),
        ["square root"],
    ),
    _m(
        "adam-no-bias-correction",
        O + "adam",
        "Adam without bias correction",
        (
            ('m_hat = config["m"] / (1 - beta1**t)', 'm_hat = config["m"]'),
            ('v_hat = config["v"] / (1 - beta2**t)', 'v_hat = config["v"]'),
        ),
        ["bias correction"],
    ),
    # ------------------------------------------------------------------ kNN, linear classifiers
    _m(
        "knn-no-sqrt",
        KNN + "compute_distances_no_loops",
        "kNN's no-loop distances without the square root",
        (
            "dists = np.sqrt(np.maximum(test_sq + train_sq - 2.0 * cross, 0.0))",
            "dists = np.maximum(test_sq + train_sq - 2.0 * cross, 0.0)",
        ),
        ["square root"],
    ),
    _m(
        "knn-l1",
        KNN + "compute_distances_two_loops",
        "kNN's two-loop distances in L1 (Manhattan) instead of L2",
        ("dists[i, j] = np.sqrt(diff @ diff)", "dists[i, j] = np.abs(diff).sum()"),
        ["L1"],
    ),
    _m(
        "knn-ties",
        KNN + "predict_labels",
        "kNN's vote breaking ties by the nearest neighbour's label instead of the smaller label",
        (
            "y_pred[i] = np.argmax(np.bincount(closest_y[i]))",
            "y_pred[i] = max(closest_y[i].tolist(), key=closest_y[i].tolist().count)",
        ),
        ["smaller label"],
    ),
    _m(
        "svm-vectorized-reg-gradient",
        "common/classifiers/linear_svm.py::svm_loss_vectorized",
        "the penalty's gradient written reg * W instead of 2 * reg * W",
        ("dW = X.T @ G / N + 2 * reg * W", "dW = X.T @ G / N + reg * W"),
        ["2 * reg * W"],
    ),
    _m(
        "softmax-vectorized-dW-not-averaged",
        "common/classifiers/softmax.py::softmax_loss_vectorized",
        "the vectorised softmax's dW not divided by N",
        ("dW = X.T @ (dscores / N) + 2 * reg * W", "dW = X.T @ dscores + 2 * reg * W"),
        ["divide by N"],
    ),
    _m(
        "softmax-naive-unstable",
        "common/classifiers/softmax.py::softmax_loss_naive",
        "the naive softmax without the shift by the max (overflows)",
        ("        scores = scores - np.max(scores)\n", ""),
        ["overflow"],
    ),
    # ------------------------------------------------------------------ GAN losses
    _m(
        "gan-d-labels-swapped",
        "common/torch_models/gan.py::discriminator_loss",
        "the discriminator's targets swapped (real 0, fake 1)",
        (
            ("(logits_real, torch.ones_like(logits_real))", "(logits_real, torch.zeros_like(logits_real))"),
            ("(logits_fake, torch.zeros_like(logits_fake))", "(logits_fake, torch.ones_like(logits_fake))"),
        ),
        ["swapped"],
    ),
    _m(
        "gan-g-minimax",
        "common/torch_models/gan.py::generator_loss",
        "the saturating minimax generator loss mean log(1 - D(G(z)))",
        (
            "loss = F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))",
            "loss = -F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))",
        ),
        ["minimax"],
    ),
    _m(
        "lsgan-no-half",
        "common/torch_models/gan.py::ls_discriminator_loss",
        "the least-squares discriminator loss without its factors 1/2",
        (
            "loss = 0.5 * ((scores_real - 1) ** 2).mean() + 0.5 * (scores_fake**2).mean()",
            "loss = ((scores_real - 1) ** 2).mean() + (scores_fake**2).mean()",
        ),
        ["twice"],
    ),
    # ------------------------------------------------------------------ style transfer, saliency
    _m(
        "gram-not-divided-by-C",
        "common/experiments/style_transfer.py::gram_matrix",
        "the Gram matrix divided by H * W only, not H * W * C",
        ("gram = gram / (H * W * C)", "gram = gram / (H * W)"),
        ["C = 4"],
    ),
    _m(
        "content-loss-mean",
        "common/experiments/style_transfer.py::content_loss",
        "the content loss as a mean instead of a sum",
        ("((content_current - content_original) ** 2).sum()", "((content_current - content_original) ** 2).mean()"),
        ["mean"],
    ),
    _m(
        "tv-loss-one-direction",
        "common/experiments/style_transfer.py::tv_loss",
        "total variation with the vertical differences only",
        ("loss = tv_weight * ((dh**2).sum() + (dw**2).sum())", "loss = tv_weight * (dh**2).sum()"),
        ["horizontal"],
    ),
    _m(
        "saliency-no-abs",
        "common/experiments/network_visualization.py::compute_saliency_maps",
        "saliency as the largest signed gradient instead of the largest absolute one",
        ("X.grad.abs().amax(dim=1)", "X.grad.amax(dim=1)"),
        ["signed"],
    ),
    # ------------------------------------------------------------------ PyTorch recurrent cells
    _m(
        "torch-lstm-gate-order",
        "common/torch_models/rnn.py::LSTM.forward",
        "the PyTorch LSTM cell's chunks taken in the order i, f, g, o",
        ("a_i, a_f, a_o, a_g = a.chunk(4, dim=1)", "a_i, a_f, a_g, a_o = a.chunk(4, dim=1)"),
        ["order"],
    ),
    _m(
        "gru-update-convention",
        "common/torch_models/rnn.py::GRU.forward",
        "the GRU's update gate the other way round: h = z * n + (1 - z) * h",
        ("h = (1 - z) * n + z * h", "h = z * n + (1 - z) * h"),
        ["1 - z"],
    ),
]


# ---------------------------------------------------------------------------------------------------
# Applying a mistake
# ---------------------------------------------------------------------------------------------------


def mutate(text: str, file: str, mistake: Mistake) -> str:
    """``text`` (a library file) with ``mistake`` made inside its block; ValueError when an edit does not
    apply exactly once inside the block."""
    name = mistake.block.split("::", 1)[1]
    blocks = {b.name: b for b in parse_python(text, file)}
    if name not in blocks:
        raise ValueError(f"{mistake.id}: no solution block {mistake.block}")
    block: Block = blocks[name]
    lines = text.splitlines(keepends=True)
    body = "".join(lines[block.start + 1 : block.end])
    for old, new in mistake.edits:
        count = body.count(old)
        if count != 1:
            raise ValueError(f"{mistake.id}: {old!r} occurs {count} times in {mistake.block} (must be once)")
        body = body.replace(old, new)
    return "".join(lines[: block.start + 1]) + body + "".join(lines[block.end :])


def validate(root: Path, mistakes: list[Mistake]) -> list[str]:
    """Problems with the catalogue: unknown blocks, edits that do not apply, duplicate ids."""
    problems, seen = [], set()
    for m in mistakes:
        if m.id in seen:
            problems.append(f"{m.id}: duplicate id")
        seen.add(m.id)
        file = m.block.split("::", 1)[0]
        try:
            new = mutate((root / file).read_text(), file, m)
            compile(new, file, "exec")
        except (ValueError, OSError, SyntaxError) as exc:
            problems.append(str(exc))
    return problems


# ---------------------------------------------------------------------------------------------------
# Running the checks
# ---------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    mistake: Mistake
    checks: list[str] = field(default_factory=list)  # the checks that ran
    failed: dict[str, str] = field(default_factory=dict)  # failing check -> its message
    first: str = ""  # the first failing check, in the checklist's order
    message: str = ""
    seconds: float = 0.0
    note: str = ""

    @property
    def caught(self) -> bool:
        return bool(self.failed)

    @property
    def named(self) -> bool:
        return self.caught and all(w.casefold() in self.message.casefold() for w in self.mistake.words)

    @property
    def named_anywhere(self) -> bool:
        return any(all(w.casefold() in msg.casefold() for w in self.mistake.words) for msg in self.failed.values())


def _env(worker: Path) -> dict:
    env = dict(os.environ, **QUICK_CHECK_ENV, PYTHONPATH=str(worker), COURSE_CACHE_DIR=str(worker / ".cache"))
    env.pop("COURSE_DATA_DIR", None)
    return env


def run_checks(worker: Path, tests: list[str], report: Path, timeout: float) -> dict[str, tuple[bool, str]]:
    """Run ``tests`` in ``worker`` (one process, no early stop); ``{test id: (passed, message)}``."""
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist"]
    cmd += ["--no-header", "-o", "junit_family=xunit1", f"--junitxml={report}", *tests]
    try:
        subprocess.run(cmd, cwd=worker, env=_env(worker), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict.fromkeys(tests, (False, "timed out"))
    results = read_junit(report)
    if not results:  # pytest could not even collect: every check counts as failed, with pytest's reason
        return dict.fromkeys(tests, (False, "the tests could not be collected"))
    return results


def _checks(reach: ReachMap, block: str) -> tuple[list[str], list[str]]:
    keep = [t for t in reach.tests.get(block, []) if not t.startswith(SKIPPED_TESTS)]
    direct = [t for t in reach.direct.get(block, []) if not t.startswith(SKIPPED_TESTS)]
    return direct, [t for t in keep if t not in direct]


def try_mistake(mistake: Mistake, worker: Path, reach: ReachMap, timeout: float) -> Outcome:
    start = time.perf_counter()
    out = Outcome(mistake)
    file = mistake.block.split("::", 1)[0]
    path = worker / file
    original = path.read_text()
    path.write_text(mutate(original, file, mistake))
    try:
        direct, others = _checks(reach, mistake.block)
        order = checks_of({"direct": direct, "tests": direct + others})
        for batch in (direct, others):
            if not batch:
                continue
            out.checks += batch
            results = run_checks(worker, batch, worker / ".cache" / "mistake.xml", timeout)
            out.failed.update({t: msg for t, (ok, msg) in results.items() if not ok and t.split("[")[0] in batch})
            if out.failed:
                break
        if not out.checks:
            out.note = "no test reaches it"
        first = next((t for t in order + list(out.failed) if t in out.failed), "")
        out.first, out.message = first, out.failed.get(first, "")
    finally:
        path.write_text(original)
    out.seconds = time.perf_counter() - start
    return out


def baseline(root: Path, worker: Path, reach: ReachMap, mistakes: list[Mistake], timeout: float) -> list[str]:
    """The checks of the catalogue that fail on the solved tree itself (then nothing can be judged)."""
    tests = sorted({t for m in mistakes for t in _checks(reach, m.block)[0]})
    results = run_checks(worker, tests, worker / ".cache" / "baseline.xml", timeout)
    return [f"{t}: {msg}" for t, (ok, msg) in results.items() if not ok]


def run_all(root: Path, mistakes: list[Mistake], workers: int, timeout: float, check_baseline: bool):
    blocks = [b for b in all_blocks(root) if b.kind == "code"]
    reach = ReachMap.build(root, blocks)
    with tempfile.TemporaryDirectory(prefix="mistakes-") as tmp:
        dirs = [copy_instructor_tree(root, Path(tmp) / f"w{i}") for i in range(workers)]
        for d in dirs:
            (d / ".cache").mkdir(exist_ok=True)
        broken = baseline(root, dirs[0], reach, mistakes, timeout) if check_baseline else []
        if broken:
            return [], broken
        queues = [mistakes[i::workers] for i in range(workers)]

        def drain(i):
            done = []
            for m in queues[i]:
                r = try_mistake(m, dirs[i], reach, timeout)
                status = "named" if r.named else ("caught" if r.caught else "NOT CAUGHT")
                print(f"  {status:<10} {m.id} ({r.seconds:.1f} s)", flush=True)
                done.append(r)
            return done

        with ThreadPoolExecutor(workers) as pool:
            results = [r for part in pool.map(drain, range(workers)) for r in part]
    order = {m.id: i for i, m in enumerate(mistakes)}
    return sorted(results, key=lambda r: order[r.mistake.id]), []


#: What a message says when the check anticipated the mistake (a suspect in ``common.diagnose``).
SUSPECT_PHRASE = "what a known mistake gives"


def _cell(text: str, limit: int = 170) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_table(results: list[Outcome]) -> str:
    lines = [
        "| mistake | function | caught by (first failing check) | named | by | its message |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.mistake
        function = m.block.split("::", 1)[1]
        first = r.first.split("::", 1)[-1] if r.first else f"**nothing** {r.note}"
        named = "yes" if r.named else ("anywhere" if r.named_anywhere else "**no**")
        by = ("suspect" if SUSPECT_PHRASE in r.message else "pattern") if r.named else ""
        message = _cell(r.message.removeprefix("AssertionError: "))
        lines.append(f"| {_cell(m.what, 90)} | `{function}` | `{first}` | {named} | {by} | {message} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="mistakes tried side by side (default 2)")
    parser.add_argument("--only", help="try only the mistakes whose id or block contains this text")
    parser.add_argument("--list", action="store_true", help="list the catalogue and check that its edits apply")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the checks on the solved tree")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    parser.add_argument("--table", type=Path, default=ROOT / "dist" / "mistakes.md", help="Markdown table to write")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    mistakes = [m for m in MISTAKES if args.only is None or args.only in m.id or args.only in m.block]
    problems = validate(ROOT, mistakes)
    for p in problems:
        print("FAIL", p)
    if args.list or problems:
        for m in mistakes:
            print(f"{m.id:<36} {m.block}  [{', '.join(m.words)}]")
        print(f"{len(mistakes)} mistakes; {'edits apply' if not problems else f'{len(problems)} problems'}")
        return 1 if problems else 0
    print(f"{len(mistakes)} mistakes, {args.workers} workers:")
    results, broken = run_all(ROOT, mistakes, args.workers, args.timeout, not args.no_baseline)
    if broken:
        for b in broken:
            print("FAIL on the solved tree:", _cell(b, 200))
        print("mistakes: the checks fail on the solved tree itself; fix them first")
        return 1
    table = render_table(results)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(table + "\n")
    print(table)
    caught = sum(r.caught for r in results)
    named = sum(r.named for r in results)
    share = named / len(results) if results else 1.0
    by_suspect = sum(r.named and SUSPECT_PHRASE in r.message for r in results)
    ok = caught == len(results) and share >= NAMED_SHARE
    print(
        f"\n{len(results)} mistakes: {caught} caught, {named} named by the first failing check "
        f"({share:.0%}; at least {NAMED_SHARE:.0%} required): {named - by_suspect} by the pattern of the difference, "
        f"{by_suspect} as an anticipated mistake; {time.perf_counter() - start:.0f} s"
    )
    for r in results:
        if not r.caught:
            print(f"FAIL {r.mistake.id}: no check fails ({r.note or 'its checks all passed'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
