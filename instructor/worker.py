"""The worker that runs a student's code for grading: ``python -m instructor.worker FD``.

It runs inside the sandbox, in a tree holding the student's library (see ``instructor.harness``), and answers
the harness over the socket inherited as file descriptor FD: it calls the function or method it is asked to
with the arguments it receives (as data, see ``instructor.codec``) and sends back the result, the arguments'
final state (a function may update a dict or an array in place) and the global random state. For a call that
autograd follows in the harness it keeps the graph and answers the vector-Jacobian product asked for later.

Nothing here is trusted by the harness: a student's code can change anything in this process, and all it can
send back is data, which the harness checks.
"""

from __future__ import annotations

import collections
import functools
import importlib
import socket
import sys

from instructor.codec import PASSED_EXCEPTIONS, Peer, RemoteError, import_library, rebind, resolve, sync

_ANY = ("common.", "torch.", "numpy.", "math")
#: Graphs kept for vector-Jacobian products not asked for yet (the oldest go first).
_KEEP_GRAPHS = 256


def _torch():
    return sys.modules.get("torch")


def rng_state() -> dict:
    """NumPy's and torch's global random state: a call moves them on as if it had run in the harness."""
    import numpy as np

    torch = _torch()
    return {"numpy": np.random.get_state(), "torch": torch.get_rng_state() if torch is not None else None}


def set_rng_state(state: dict | None) -> None:
    import numpy as np

    if not state:
        return
    if state.get("numpy") is not None:
        np.random.set_state(state["numpy"])
    if state.get("torch") is not None:
        import torch

        torch.set_rng_state(state["torch"])


class Worker:
    def __init__(self, sock: socket.socket):
        self.graphs: collections.OrderedDict[int, tuple[list, list]] = collections.OrderedDict()
        self.next_graph = 1

        def on_handle(fn):
            return lambda p, h, b: p.answer(fn(p.handles.get(int(h["h"])), p.decoder(b), h))

        self.peer = Peer(
            sock,
            {
                "setup": self.setup,
                "call": self.call,
                "vjp": self.vjp,
                "call_handle": on_handle(lambda o, d, h: o(*d.decode(h["args"]), **d.decode(h["kwargs"]))),
                "getattr": on_handle(lambda o, d, h: getattr(o, str(d.decode(h["name"])))),
                "getitem": on_handle(lambda o, d, h: o[d.decode(h["key"])]),
                "len": on_handle(lambda o, d, h: len(o)),
                "iter": on_handle(lambda o, d, h: list(o)),
                "repr": on_handle(lambda o, d, h: repr(o)[:200]),
                "release": lambda p, h, b: p.answer(p.handles.objects.pop(int(h["h"]), None) and None),
            },
            allow_class=None,
        )

    def setup(self, peer: Peer, h: dict, bufs: list[bytes]):
        """Make each of ``references`` (graded functions whose student version is not used in this run) call the
        instructor's version, which runs in the harness: the worker never holds the instructor's code."""
        references = h.get("references") or []
        if references:
            import_library()
        for target in references:
            module, _, qual = str(target).partition(":")
            mod = importlib.import_module(module)
            if "." in qual:
                cls_name, method = qual.rsplit(".", 1)
                cls = getattr(mod, cls_name)
                setattr(cls, method, self._wrap(target, cls.__dict__[method], True))
            else:
                original = getattr(mod, qual)
                rebind(original, self._wrap(target, original, False))
        return {"value": None}, []

    def _wrap(self, target: str, original, method: bool):
        worker = self

        @functools.wraps(original)
        def reference(*args, **kwargs):
            return worker.reference(target, original, method, args, kwargs)

        return reference

    def reference(self, target: str, original, method: bool, args: tuple, kwargs: dict):
        """``target`` run by the harness (the instructor's version), with the arguments' state brought back."""
        peer = self.peer
        enc = peer.encoder(track_grad=True)
        self_obj = args[0] if method else None
        rest = list(args[1:] if method else args)
        head = {
            "op": "reference",
            "target": target,
            "self": enc.encode(self_obj),
            "args": enc.encode(rest),
            "kwargs": enc.encode(dict(kwargs)),
            "rng": enc.encode(rng_state()),
        }
        if enc.grad_leaves:
            # autograd could not follow the harness's result back into this process: the student's own runs
            return original(*args, **kwargs)
        try:
            h, bufs = peer.request(head, enc.buffers)
        except RemoteError as e:
            cls = PASSED_EXCEPTIONS.get(e.kind)
            if cls is not None:
                raise cls(e.message) from None
            raise
        dec = peer.decoder(bufs)
        value, after = dec.decode(h["value"]), dec.decode(h["after"])
        set_rng_state(after["rng"])
        if method:
            sync(self_obj, after["self"])
        for old, new in zip(rest, after["args"]):
            sync(old, new)
        for key, old in kwargs.items():
            if key in after["kwargs"]:
                sync(old, after["kwargs"][key])
        return value

    def call(self, peer: Peer, h: dict, bufs: list[bytes]):
        dec = peer.decoder(bufs)
        self_obj = dec.decode(h["self"])
        args = dec.decode(h["args"])
        kwargs = dec.decode(h["kwargs"])
        set_rng_state(dec.decode(h["rng"]))
        fn = resolve(str(h["path"]), _ANY)
        if h.get("method"):
            fn = getattr(fn, str(h["method"]))
            args = [self_obj, *args]
        leaves = [dec.grad_leaves[i] for i in sorted(dec.grad_leaves)]
        torch = _torch()
        if torch is not None:
            with torch.set_grad_enabled(bool(h.get("grad"))):
                result = fn(*args, **kwargs)
        else:
            result = fn(*args, **kwargs)
        enc = peer.encoder()
        head = {}
        if leaves:
            enc.out_tensors = outputs = []
            head["value"] = enc.encode(result)
            enc.out_tensors = None
            gid = self.next_graph
            self.next_graph += 1
            self.graphs[gid] = (leaves, outputs)
            while len(self.graphs) > _KEEP_GRAPHS:
                self.graphs.popitem(last=False)
            head["graph"] = gid
        else:
            head["value"] = enc.encode(result)
        after_args = args[1:] if h.get("method") else args
        enc.unchanged = {id(a): (i, raw) for i, (a, raw) in enumerate(dec.arrays)}
        head["after"] = enc.encode({"self": self_obj, "args": after_args, "kwargs": kwargs, "rng": rng_state()})
        enc.unchanged = None
        return head, enc.buffers

    def vjp(self, peer: Peer, h: dict, bufs: list[bytes]):
        import torch

        gid = int(h["graph"])
        if gid not in self.graphs:
            raise KeyError(f"graph {gid} is no longer kept (too many calls since)")
        self.graphs.move_to_end(gid)
        leaves, outputs = self.graphs[gid]
        grads = peer.decoder(bufs).decode(h["grads"])
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
        if not pairs:
            return peer.answer([None] * len(leaves))
        # kept: a test may differentiate the same output more than once (a Jacobian, row by row)
        got = torch.autograd.grad(
            [o for o, _ in pairs], leaves, [g for _, g in pairs], allow_unused=True, retain_graph=True
        )
        return peer.answer(list(got))


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    Worker(sock).peer.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
