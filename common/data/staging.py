"""Temporary folders and child processes of the dataset fetcher, made so that none outlives it (stdlib only).

Every temporary folder lives in the data directory (so finished files move into place with one atomic
rename) and is named ``.fetch-tmp-<host>-<pid>-<label>-<random>``. It is removed when its ``with`` block
ends, also on Ctrl+C and SIGTERM (``stop_on_signals`` turns those into an exception). When the fetcher is
killed outright (SIGKILL, power loss) the next run removes it: ``clean_leftovers`` deletes every such
folder whose owner process on this host is gone, or that has not changed for a day (the pid may have been
reused, or the folder is on a disk shared with another machine, whose processes cannot be seen).

Child processes (pip, apt-get) run in a process group of their own, which is killed when the fetcher
exits or is stopped; on Linux the kernel also kills them when the fetcher dies (PR_SET_PDEATHSIG).
Elsewhere a child of a SIGKILLed fetcher runs on until it finishes by itself, and its folder is
removed by the next run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PREFIX = ".fetch-tmp-"
_OURS = re.compile(r"^\.fetch-tmp-([A-Za-z0-9]+)-(\d+)-")
# Folders of earlier versions of the fetcher, named after the dataset alone (tempfile's 8 random characters).
_LEGACY = re.compile(r"^\.(mnist|fashion-mnist|cifar|coco)-[a-z0-9_]{8}$")
STALE_AFTER = 24 * 3600  # seconds without change after which a folder is abandoned whatever its pid
LEGACY_STALE_AFTER = 600  # the old names carry no pid: wait until nothing in them has changed for a while

_children: set[subprocess.Popen] = set()


class Stopped(BaseException):
    """The fetcher received SIGTERM or SIGHUP; raised so that every ``finally`` block cleans up."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")
        self.signum = signum


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def owner_tag(pid: int | None = None) -> str:
    """The start of the names of the temporary folders of process ``pid`` (default: this one)."""
    return f"{PREFIX}{_host()}-{os.getpid() if pid is None else pid}-"


@contextlib.contextmanager
def staging_dir(root: Path, label: str) -> Iterator[Path]:
    """A new empty folder in ``root``, removed with its contents when the block ends (however it ends)."""
    path = Path(tempfile.mkdtemp(prefix=f"{owner_tag()}{label}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- leftovers of killed runs


def _process_gone(pid: int) -> bool:
    """True when no live process has ``pid`` (a zombie counts as gone: it will never clean up)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _last_change_and_size(path: Path) -> tuple[float, int]:
    newest, size = path.lstat().st_mtime, 0
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            newest = max(newest, st.st_mtime)
            size += st.st_size if name in files else 0
    return newest, size


def clean_leftovers(root: Path, now: float | None = None) -> tuple[list[str], list[str]]:
    """Remove temporary folders that killed fetchers left in ``root``.

    Returns ``(removed, failed)``: one line per folder, what was removed (with its size) and what
    could not be (with the reason, e.g. a read-only directory). Folders of running fetchers are kept.
    """
    now = time.time() if now is None else now
    removed, failed = [], []
    try:
        entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed, failed
    for entry in entries:
        ours, legacy = _OURS.match(entry.name), _LEGACY.match(entry.name)
        if not ours and not legacy:
            continue
        path = Path(entry.path)
        try:
            changed, size = _last_change_and_size(path)
        except OSError:
            continue
        if ours:
            gone = ours[1] == _host() and _process_gone(int(ours[2]))
            stale = gone or now - changed > STALE_AFTER
        else:
            stale = now - changed > LEGACY_STALE_AFTER
        if not stale:
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:
            failed.append(f"{path} ({size / 1e6:.1f} MB): {exc.strerror or exc}")
        else:
            removed.append(f"{path.name} ({size / 1e6:.1f} MB)")
    return removed, failed


# --------------------------------------------------------------------------- child processes


def _die_with_parent():
    """A ``preexec_fn`` that makes the child receive SIGKILL when this process dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def set_death_signal():
        prctl(pr_set_pdeathsig, ctypes.c_ulong(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return set_death_signal


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:  # the group leader is still ours, so its process group id is too
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_children() -> None:
    """Kill the process group of every child still running (called at exit and when stopped)."""
    for proc in list(_children):
        _kill_group(proc)
        _children.discard(proc)


def run_child(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` to its end with its output captured, in a process group that dies with the fetcher."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent(),
    )
    _children.add(proc)
    try:
        out, err = proc.communicate()
    finally:
        _kill_group(proc)
        _children.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP raise ``Stopped`` (a second one is ignored while cleaning up), and kill
    the children at exit. Call once, from the main thread of the command-line entry point."""

    def handler(signum, frame):
        signal.signal(signum, signal.SIG_IGN)
        raise Stopped(signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
    atexit.unregister(kill_children)  # registered once, however often this is called
    atexit.register(kill_children)
