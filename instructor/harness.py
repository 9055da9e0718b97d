"""The grading harness: the course's own checks, run where a student's code cannot reach them.

Loaded into pytest as a plugin (``-p instructor.harness``) by the grader, with ``COURSE_HARNESS`` naming a JSON
file that says which functions and methods are the student's (``"common.layers:affine_forward"``,
``"common.classifiers.fc_net:FullyConnectedNet.loss"``), where the student's tree is and how to sandbox it.
The tests then run in this process against the instructor's library, in which each of those functions is
replaced by a *proxy*: calling it sends the arguments as data to a worker (``instructor.worker``) that runs the
student's function inside the sandbox, and returns what comes back, as data. So every verdict is computed here,
by the instructor's tests, with the instructor's NumPy, torch and pytest, none of which a student's code ever
touches. What a proxy keeps faithful:

- arguments updated in place (a ``bn_param`` dict, an optimiser's ``config``, an array, a module's buffers),
  ``self`` of a method (its ``__dict__`` travels both ways), NumPy's and torch's global random state;
- autograd: a call with tensors that require grad is one node of the harness's graph, whose backward pass asks
  the worker for the vector-Jacobian product of the student's own graph;
- exceptions: the types tests expect (``ValueError`` for impossible geometry, ...) are raised as themselves, with
  the student's file and line; anything else is a :class:`StudentError`;
- time: a call that does not return within the time limit of a test kills the worker (its whole sandbox) and
  fails with :class:`WorkerTimeout` naming the function; the next call starts a fresh worker.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import socket
import sys
import threading
from pathlib import Path

import numpy as np

from instructor.codec import (
    PASSED_EXCEPTIONS,
    ChannelClosed,
    ChannelError,
    Peer,
    RemoteError,
    RemoteObject,
    import_library,
    rebind,
    sync,
)

ENV = "COURSE_HARNESS"


class StudentError(Exception):
    """An exception of a type the tests do not expect, raised by a student's code."""


class WorkerTimeout(Exception):
    """A call into a student's code did not return in time (the worker was killed)."""

    def __init__(self, function: str, seconds: float):
        super().__init__(f"{function} timed out: no answer within {seconds:g} s (an endless loop, or far too slow)")
        self.function = function


class WorkerCrashed(Exception):
    """The worker running a student's code died during a call (memory limit, a crash, exit)."""

    def __init__(self, function: str, why: str):
        super().__init__(f"{function}: the process running your code died ({why})")
        self.function = function


@dataclasses.dataclass
class HarnessConfig:
    targets: list[str]  # the functions graded in this run: "module:function" or "module:Class.method"
    tree: str  # the worker tree (the student's library)
    scratch: str  # the worker's private writable folder
    log: str  # where the worker's output goes (capped)
    call_seconds: float = 30.0
    isolate: bool = True
    limits: dict = dataclasses.field(default_factory=dict)
    readonly: dict = dataclasses.field(default_factory=dict)  # {mount point inside: host path}
    env: dict = dataclasses.field(default_factory=dict)  # more environment for the worker
    # graded functions whose student version is not used in this run: where the student's code calls one, the
    # instructor's version runs, here
    references: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HarnessConfig:
        return cls(**json.loads(Path(path).read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))


# ---------------------------------------------------------------------------------------------------
# The worker's side of the harness: starting it, calling into it
# ---------------------------------------------------------------------------------------------------


def _torch():
    return sys.modules.get("torch")


def _rng_state() -> dict:
    torch = _torch()
    return {"numpy": np.random.get_state(), "torch": torch.get_rng_state() if torch is not None else None}


def _set_rng_state(state) -> None:
    if not isinstance(state, dict):
        raise ChannelError("the worker sent back no random state")
    np.random.set_state(state["numpy"])
    torch = _torch()
    if torch is not None and state.get("torch") is not None:
        torch.set_rng_state(state["torch"])


class Harness:
    """Starts the sandboxed worker on first use and forwards calls to it."""

    def __init__(self, config: HarnessConfig):
        self.config = config
        self.peer: Peer | None = None
        self.box = None
        self.proxied_classes: set[type] = set()
        self.starts = 0
        self.hung: set[str] = set()  # functions whose call ran out of time
        self.originals: dict[str, object] = {}  # reference target -> the instructor's function
        # one call at a time on the channel (tests may call from threads); re-entered by callbacks
        self.lock = threading.RLock()

    # worker lifecycle ---------------------------------------------------------------------------
    def _start(self) -> Peer:
        from instructor.sandbox import Limits, Sandbox

        cfg = self.config
        limits = Limits(**cfg.limits)
        scratch = Path(cfg.scratch) / f"run-{os.getpid()}-{self.starts}"
        scratch.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        box = Sandbox(
            Path(cfg.tree), scratch, limits, isolate=cfg.isolate, readonly={k: Path(v) for k, v in cfg.readonly.items()}
        )
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):  # a model's parameters go in one write, not many round trips of the kernel
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        env = {
            "PYTHONPATH": box.path_inside(Path(cfg.tree)),
            "COURSE_QUICK": "1",
            "COURSE_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg",
        }
        env.update(cfg.env)
        for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LANG", "LC_ALL"):
            if key in os.environ:
                env[key] = os.environ[key]
        try:
            box.popen(
                [sys.executable, "-m", "instructor.worker", str(theirs.fileno())],
                env=env,
                pass_fds=(theirs.fileno(),),
                log=Path(cfg.log),
            )
        finally:
            theirs.close()
        self.box = box
        self.peer = Peer(
            ours,
            {"call_handle": _call_local, "release": _release_local, "reference": self._serve_reference},
            allow_class=self._allow_class,
        )
        self.request({"op": "setup", "references": list(cfg.references)}, [], "starting the worker")
        return self.peer

    def _serve_reference(self, peer: Peer, h: dict, bufs: list[bytes]):
        """The worker asks for the instructor's version of a graded function that a student's function called."""
        target = str(h.get("target"))
        fn = self.originals.get(target)
        if fn is None:
            raise ChannelError(f"{target!r} is not a function the worker may ask for")
        dec = peer.decoder(bufs)
        self_obj, args, kwargs = dec.decode(h["self"]), dec.decode(h["args"]), dec.decode(h["kwargs"])
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ChannelError("malformed arguments")
        _set_rng_state(dec.decode(h["rng"]))
        call_args = [self_obj, *args] if "." in target.partition(":")[2] else args
        value = fn(*call_args, **kwargs)
        return peer.answer(value, after={"self": self_obj, "args": args, "kwargs": kwargs, "rng": _rng_state()})

    def stop(self) -> None:
        if self.box is not None:
            self.box.kill()
        if self.peer is not None:
            self.peer.sock.close()
        self.box = self.peer = None

    def _allow_class(self, cls: type) -> bool:
        """Classes the worker may send by value: torch's modules, the library's modules and configurations,
        and the classes whose methods are the student's (their ``self`` comes back)."""
        torch = _torch()
        if torch is not None and issubclass(cls, torch.nn.Module):
            return True
        if cls.__module__.startswith("common.") and dataclasses.is_dataclass(cls):
            return True
        return any(issubclass(cls, c) for c in self.proxied_classes)

    # calls --------------------------------------------------------------------------------------
    def call(self, path: str, method: str | None, self_obj, args: tuple, kwargs: dict, label: str):
        if label in self.hung:  # it ran out of time once: the later checks need not wait for it again
            raise WorkerTimeout(label, self.config.call_seconds)
        with self.lock:
            return self._call(path, method, self_obj, args, kwargs, label)

    def _call(self, path: str, method: str | None, self_obj, args: tuple, kwargs: dict, label: str):
        peer = self.peer or self._start()
        torch = _torch()
        grad = bool(torch is not None and torch.is_grad_enabled())
        enc = peer.encoder(track_grad=grad)
        head = {
            "op": "call",
            "path": path,
            "method": method,
            "grad": grad,
            "self": enc.encode(self_obj),
            "args": enc.encode(list(args)),
            "kwargs": enc.encode(dict(kwargs)),
            "rng": enc.encode(_rng_state()),
        }
        if enc.grad_leaves:
            pending = _Pending(self, head, enc.buffers, label)
            pending.sent = enc.sent
            outs = _remote_function().apply(pending, *enc.grad_leaves)
            value = pending.value
            if pending.outputs:
                swap = {id(plain): tracked for plain, tracked in zip(pending.outputs, outs)}
                value = _replace(value, swap)
            with torch.no_grad():
                self._after(pending.after, self_obj, args, kwargs)
            return value
        h, bufs = self.request(head, enc.buffers, label)
        dec = peer.decoder(bufs)
        dec.sent = enc.sent
        value = dec.decode(h["value"])
        self._after(dec.decode(h["after"]), self_obj, args, kwargs)
        return value

    def request(self, head: dict, buffers: list[bytes], label: str):
        peer = self.peer or self._start()
        peer.sock.settimeout(self.config.call_seconds)
        try:
            return peer.request(head, buffers)
        except RemoteError as e:
            cls = PASSED_EXCEPTIONS.get(e.kind)
            where = f" (raised at {e.where})" if e.where else ""
            if cls is not None:
                raise cls(f"{e.message}{where}") from None
            raise StudentError(f"{label} raised {e.kind}: {e.message}{where}") from None
        except TimeoutError:
            self.hung.add(label)
            self.stop()
            raise WorkerTimeout(label, self.config.call_seconds) from None
        except ChannelClosed:
            self.stop()
            raise WorkerCrashed(label, "killed by a limit, crashed or exited") from None
        except BaseException:  # interrupted mid-call (a test's own time limit): the channel is out of step
            self.stop()
            raise

    def _after(self, after: dict, self_obj, args: tuple, kwargs: dict) -> None:
        """Apply the arguments' and ``self``'s final state and the random state the worker sent back."""
        if not isinstance(after, dict) or not {"self", "args", "kwargs", "rng"} <= after.keys():
            raise ChannelError("the worker's answer lacks the arguments' final state")
        _set_rng_state(after["rng"])
        if self_obj is not None:
            sync(self_obj, after["self"])
        new_args = after["args"]
        if isinstance(new_args, list) and len(new_args) == len(args):
            for old, new in zip(args, new_args):
                sync(old, new)
        new_kwargs = after["kwargs"]
        if isinstance(new_kwargs, dict):
            for key, old in kwargs.items():
                if key in new_kwargs:
                    sync(old, new_kwargs[key])


class _Pending:
    """One call that autograd follows: made in the autograd function's forward, differentiated by the worker."""

    def __init__(self, harness: Harness, head: dict, buffers: list[bytes], label: str):
        self.harness, self.head, self.buffers, self.label = harness, head, buffers, label
        self.value = self.after = None
        self.outputs: list = []
        self.graph = None
        self.peer = harness.peer
        self.sent: list = []

    def run(self) -> list:
        h, bufs = self.harness.request(self.head, self.buffers, self.label)
        dec = self.peer.decoder(bufs)
        dec.sent = self.sent
        self.value = dec.decode(h["value"])
        self.after = dec.decode(h["after"])
        self.graph = h.get("graph")
        self.outputs = [dec.outputs[i] for i in sorted(dec.outputs)]
        return self.outputs

    def vjp(self, grads) -> list:
        if self.harness.peer is not self.peer:
            raise ChannelError(f"{self.label}: the worker that computed this output was restarted")
        enc = self.peer.encoder()
        head = {"op": "vjp", "graph": self.graph, "grads": enc.encode(list(grads))}
        h, bufs = self.harness.request(head, enc.buffers, self.label + " (backward)")
        return self.peer.decoder(bufs).decode(h["value"])


@functools.cache
def _remote_function():
    import torch

    class RemoteCall(torch.autograd.Function):
        """A call into the worker as one node of the harness's autograd graph."""

        @staticmethod
        def forward(ctx, pending, *leaves):
            outs = pending.run()
            ctx.pending, ctx.n = pending, len(leaves)
            return tuple(outs) if outs else (torch.zeros(()),)

        @staticmethod
        def backward(ctx, *grads):
            got = ctx.pending.vjp([g if ctx.pending.outputs else None for g in grads])
            if not isinstance(got, list) or len(got) != ctx.n:
                raise ChannelError(f"{ctx.pending.label}: the worker sent a malformed gradient")
            return (None, *got)

    return RemoteCall


def _replace(value, swap: dict):
    if id(value) in swap:
        return swap[id(value)]
    if isinstance(value, list):
        return [_replace(v, swap) for v in value]
    if isinstance(value, tuple):
        return tuple(_replace(v, swap) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _replace(v, swap)) for k, v in value.items())
    return value


def _call_local(peer: Peer, h: dict, bufs: list[bytes]):
    """The worker calls back a function of the harness that a test passed to the student's code (a loss)."""
    dec = peer.decoder(bufs)
    fn = peer.handles.get(int(h["h"]))
    if not callable(fn):
        raise ChannelError("only functions the checks passed may be called back")
    return peer.answer(fn(*dec.decode(h["args"]), **dec.decode(h["kwargs"])))


def _release_local(peer: Peer, h: dict, bufs: list[bytes]):
    peer.handles.objects.pop(int(h["h"]), None)
    return peer.answer(None)


# ---------------------------------------------------------------------------------------------------
# Proxies
# ---------------------------------------------------------------------------------------------------


def _function_proxy(harness: Harness, module: str, name: str, original):
    path = f"{module}:{name}"

    @functools.wraps(original)
    def proxy(*args, **kwargs):
        return harness.call(path, None, None, args, kwargs, name)

    proxy.__course_proxy__ = path
    return proxy


def _method_proxy(harness: Harness, module: str, cls_name: str, method: str, original):
    path = f"{module}:{cls_name}"
    label = f"{cls_name}.{method}"

    @functools.wraps(original)
    def proxy(self, *args, **kwargs):
        return harness.call(path, method, self, args, kwargs, label)

    proxy.__course_proxy__ = f"{path}.{method}"
    return proxy


def install(config: HarnessConfig) -> Harness:
    """Replace the student's functions and methods named in ``config.targets`` by proxies into the worker."""
    harness = Harness(config)
    import_library()
    for target in config.references:
        module, _, qual = target.partition(":")
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = vars(obj)[part] if isinstance(obj, type) else getattr(obj, part)
        harness.originals[target] = obj
    for target in config.targets:
        module, _, qual = target.partition(":")
        mod = importlib.import_module(module)
        if "." in qual:
            cls_name, method = qual.rsplit(".", 1)
            cls = getattr(mod, cls_name)
            original = cls.__dict__[method]
            if isinstance(original, (staticmethod, classmethod)):
                raise ValueError(f"{target}: static and class methods cannot be graded apart")
            setattr(cls, method, _method_proxy(harness, module, cls_name, method, original))
            harness.proxied_classes.add(cls)
        else:
            original = getattr(mod, qual)
            rebind(original, _function_proxy(harness, module, qual, original))
    return harness


# ---------------------------------------------------------------------------------------------------
# The pytest plugin
# ---------------------------------------------------------------------------------------------------

_HARNESS: Harness | None = None


def pytest_configure(config):
    global _HARNESS
    path = os.environ.get(ENV)
    if path and _HARNESS is None:
        _HARNESS = install(HarnessConfig.load(path))


def pytest_unconfigure(config):
    if _HARNESS is not None:
        _HARNESS.stop()


def pytest_runtest_makereport(item, call):
    """Mark a test whose call into the student's code timed out, with the function, in the JUnit report."""
    if call.excinfo is not None and call.excinfo.errisinstance(WorkerTimeout):
        item.user_properties.append(("timed_out_in", call.excinfo.value.function))


__all__ = ["Harness", "HarnessConfig", "RemoteObject", "StudentError", "WorkerCrashed", "WorkerTimeout", "install"]
