"""Where a submission's code runs: a bubblewrap sandbox on Linux, or (only when asked) a plain process.

Inside the sandbox the filesystem holds only the worker tree (read-only, at ``/course``, the working folder), the
read-only binds the caller names (the datasets), the Python environment and the system's ``/usr`` (read-only), a
private writable scratch folder (at ``/scratch``, also ``HOME`` and ``TMPDIR``) and small private ``/tmp`` and
``/dev/shm``. The instructor's home, repository, grades and other submissions are not there at all. There is no
network (a new network namespace holds only its own loopback), no way to see or signal the host's processes (a new
PID namespace whose first process is bubblewrap's: when the sandbox ends, every process in it ends, daemons
included) and no new user namespaces.

Limits (:class:`Limits`), set by a launcher inside the sandbox just before the command starts:

* memory: ``RLIMIT_AS`` per process (an allocation beyond it fails: ``MemoryError`` in Python);
* CPU time: ``RLIMIT_CPU`` per process (the kernel kills it);
* processes: ``RLIMIT_NPROC``. The kernel counts it per user *and user namespace* (Linux 5.14 or later), and the
  sandbox's processes live in a user namespace of their own, so the limit is the sandbox's own: its other
  sandboxes and the instructor's own processes do not count against it, and a fork bomb stops at the limit.
  The kernel never enforces it for root, so when the grader runs as root the sandbox runs as ``nobody``
  (uid 65534): a privileged outer bubblewrap builds the filesystem (it can read an interpreter under ``/root``),
  then drops to ``nobody`` and starts an unprivileged inner bubblewrap for the user namespace;
* output: stdout and stderr go through a pipe to the log, which keeps the first ``output_bytes`` and then closes
  the pipe (a writer gets ``BrokenPipeError`` or dies of ``SIGPIPE``);
* scratch: ``RLIMIT_FSIZE`` caps each file at ``scratch_bytes``; a watchdog adds up the scratch folder while the
  sandbox runs and kills the sandbox when the folder holds more than ``scratch_bytes`` (or more than
  ``SCRATCH_MAX_ENTRIES`` names). ``/tmp`` and ``/dev/shm`` are memory file systems of ``scratch_bytes`` each.

``isolate=False`` is the explicit no-sandbox mode (``--no-sandbox``) for machines without bubblewrap: a plain
process in its own session with the same rlimits, which sees the whole filesystem and the network as the
grader's user, and whose processes that leave its session survive :meth:`Sandbox.kill`. There the processes limit
is the kernel's per-user count of all the grader's processes (set to those running now plus ``processes``), and
as root it is not enforced at all. Callers must say so in every report.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: Where the worker tree and the scratch folder are seen inside the sandbox.
TREE_INSIDE = "/course"
SCRATCH_INSIDE = "/scratch"
#: The user the sandbox runs as when the grader is root (``nobody``): the kernel limits its processes.
SANDBOX_UID = 65534
#: More names than this in the scratch folder is an attack on the disk's inodes, not work: the sandbox is killed.
SCRATCH_MAX_ENTRIES = 100_000
#: How often the watchdog adds up the scratch folder.
WATCH_SECONDS = 0.25
#: What the grader's user is told when bubblewrap is missing.
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`, or `make sandbox` as root), or grade "
    "without isolation with --no-sandbox (every report then says so)"
)

# Runs inside the sandbox just before the command (``python -I -S -c LAUNCHER opts... -- argv...``): says it has
# started (a byte to ``ready=FD``), drops to a user (``uid=N``), sets limits (``NAME=N`` for ``RLIMIT_NAME``;
# ``NAME?=N`` when the system may refuse it), closes every file descriptor but 0, 1, 2 and those in ``keep=a,b``
# and executes the command. It takes the place of ``preexec_fn``, which is not safe in a process with threads.
_LAUNCHER = """
import os, resource, sys
args = sys.argv[1:]
cut = args.index("--")
keep = {0, 1, 2}
try:
    for opt in args[:cut]:
        name, value = opt.split("=", 1)
        if name == "keep":
            keep |= {int(fd) for fd in value.split(",") if fd}
        elif name == "ready":
            os.write(int(value), b"1")
            os.close(int(value))
        elif name == "uid":
            uid = int(value)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        else:
            optional = name.endswith("?")
            limit = int(value)
            try:
                resource.setrlimit(getattr(resource, "RLIMIT_" + name.rstrip("?")), (limit, limit))
            except (ValueError, OSError):
                if not optional:
                    raise
    for fd in keep:
        os.set_inheritable(fd, True)
    low = 0
    for fd in sorted(keep):
        if fd > low:  # closerange(n, n) would close everything from n on
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    os.execv(args[cut + 1], args[cut + 1 :])
except Exception as exc:
    sys.stderr.write(f"sandbox launcher: {type(exc).__name__}: {exc}\\n")
    os._exit(70)
"""


@dataclass(frozen=True)
class Limits:
    """What one run of student code may use. Passed to :class:`Sandbox`; the times are the caller's to enforce."""

    test_seconds: float = 30  # one test / one call into student code
    run_seconds: float = 900  # one harness run
    # one exercise's checks run alone; where many of a submission's functions are unsound, their calls go back to
    # the instructor's versions one round trip at a time, and a numerical gradient check makes thousands
    isolated_seconds: float = 600
    notebook_seconds: float = 600
    submission_seconds: float = 1800
    memory_bytes: int = 6 << 30  # address space per process
    cpu_seconds: int = 1800  # CPU time per process
    processes: int = 256  # processes/threads the sandbox may hold
    output_bytes: int = 16 << 20  # what the worker may print
    scratch_bytes: int = 1 << 30  # its private scratch space


class SandboxUnavailable(RuntimeError):
    """Bubblewrap cannot run here; the message says why and what to do."""


#: Starts every bubblewrap (see :meth:`Sandbox.popen`).
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
#: bubblewrap's options that mount or make something at their second argument.
_BINDS = {"--ro-bind", "--ro-bind-try", "--bind", "--ro-bind-data", "--symlink"}


def _bwrap() -> str | None:
    return shutil.which("bwrap")


def _is_root() -> bool:
    return os.geteuid() == 0


def _userns_hint() -> str:
    """Why unprivileged user namespaces may be off, from the kernel's switches."""
    hints = []
    for path, bad, fix in (
        ("/proc/sys/user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0", "sysctl -w kernel.unprivileged_userns_clone=1"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "an AppArmor profile for bwrap, or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        ),
    ):
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() == bad:
                hints.append(f"{path} is {bad} (allow them with {fix})")
    inside_container = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    if inside_container:
        hints.append("this looks like a container, whose seccomp profile may forbid them")
    return "; ".join(hints) or "the kernel refused them"


@functools.lru_cache(maxsize=1)
def sandbox_status() -> tuple[bool, str]:
    """``(True, version)`` when bubblewrap can build this module's sandbox here, else ``(False, why and what to do)``.

    It really starts one (the same namespaces, user, binds and launcher as :meth:`Sandbox.popen`), so a kernel
    without unprivileged user namespaces or a container that forbids them is found here, not in the first
    submission. The answer is kept for the life of the process."""
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap needs Linux (this is {sys.platform}); {INSTALL_HINT}"
    bwrap = _bwrap()
    if bwrap is None:
        return False, f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as tmp:
        tree, scratch = Path(tmp, "tree"), Path(tmp, "scratch")
        tree.mkdir()
        scratch.mkdir()
        tree.chmod(0o755)
        log = Path(tmp, "log")
        box = None
        try:
            box = Sandbox(tree, scratch, Limits(), _checked=True)
            proc = box.popen([sys.executable, "-I", "-S", "-c", "print('ok')"], env={}, log=log)
            code = proc.wait(timeout=60)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            return False, f"bubblewrap at {bwrap} could not start a sandbox ({exc}); {INSTALL_HINT}"
        finally:
            if box is not None:
                box.kill()
        out = log.read_text(errors="replace").strip()
    if code != 0 or out != "ok":
        why = out.splitlines()[-1] if out else f"exit status {code}"
        if "namespace" in why or "uid map" in why or "setting up uid" in why:
            why += f": unprivileged user namespaces are not available ({_userns_hint()})"
        return False, f"bubblewrap at {bwrap} could not start a sandbox: {why}; {INSTALL_HINT}"
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
    return True, version or "bubblewrap"


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _python_dirs() -> list[str]:
    """The folders the interpreter needs, at their host paths: the environment, the installation it was made from
    and every folder the interpreter's symlinks pass through (a .venv may point into a pyenv installation)."""
    dirs = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    hop = sys.executable
    for _ in range(40):
        dirs.append(os.path.dirname(hop))
        if not os.path.islink(hop):
            break
        hop = os.path.join(os.path.dirname(hop), os.readlink(hop))
    dirs += [os.path.realpath(d) for d in dirs]
    keep: list[str] = []
    for d in sorted({os.path.normpath(d) for d in dirs}, key=len):
        if not _within(d, "/usr") and not any(_within(d, k) for k in keep):
            keep.append(d)
    # The environment must not contain what the sandbox hides: the grader's home or working folder.
    for secret in {str(Path.home()), os.getcwd()}:
        for d in keep:
            if _within(secret, d):
                raise SandboxUnavailable(
                    f"the Python environment folder {d} contains {secret} (the grader's home or working folder), "
                    "which the sandbox must hide; use an environment in a folder of its own (a .venv, pyenv, conda)"
                )
    return keep


def _data_fd(text: str) -> int:
    """A pipe's read end holding ``text`` (bubblewrap copies it into a file inside the sandbox)."""
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    return r


def _scratch_over(folder: Path, limit: int) -> str | None:
    """Why the scratch folder is over its limit (bytes on disk or names), or None. An unreadable folder inside it
    counts as over: only its own code can have made it so, and what it holds cannot be counted."""
    used, names = 0, 0
    todo = [str(folder)]
    while todo:
        try:
            with os.scandir(todo.pop()) as it:
                for entry in it:
                    names += 1
                    st = entry.stat(follow_symlinks=False)
                    used += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            return f"the scratch folder has a folder its owner cannot read ({exc.filename})"
        if used > limit:
            return f"the scratch folder holds more than {limit} bytes"
        if names > SCRATCH_MAX_ENTRIES:
            return f"the scratch folder holds more than {SCRATCH_MAX_ENTRIES} files"
    return None


class SandboxProcess(subprocess.Popen):
    """A process started by :meth:`Sandbox.popen`. ``returncode`` is the command's exit status; killed by a signal
    it is ``128 + signal`` inside bubblewrap and ``-signal`` without it (see :meth:`killed_by`). ``exceeded`` lists
    the limits the sandbox itself saw broken (``"output"``, ``"scratch"``) with why."""

    isolated: bool
    exceeded: list[str]
    _drain: threading.Thread | None
    _ns_pidfd: int | None  # the sandbox's first process (of its PID namespace), kept until the process is gone

    def killed_by(self) -> int | None:
        """The signal that ended the command, if one did."""
        code = self.returncode
        if code is None:
            return None
        if code < 0:
            return -code
        if self.isolated and code > 128:
            return code - 128
        return None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command to end, and in the sandbox for every process in it to be gone and the log to be
        complete."""
        end = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if end is None else max(0.0, end - time.monotonic())

        code = super().wait(timeout)
        pidfd = self._ns_pidfd
        # The namespace's first process is gone only after every other process in the namespace.
        if pidfd is not None and not select.select([pidfd], [], [], left())[0]:
            raise subprocess.TimeoutExpired(self.args, timeout)
        # The log is complete once the drain has read to the end (every writer inside the sandbox has gone).
        drain = self._drain
        if drain is not None and drain is not threading.current_thread():
            if self.isolated:
                drain.join(left())
                if drain.is_alive():
                    raise subprocess.TimeoutExpired(self.args, timeout)
            else:
                # Without the sandbox a process that left the session may hold the pipe for ever.
                drain.join(1.0 if end is None else min(1.0, left() or 0.0))
        return code

    def __del__(self, *args, **kwargs):
        with contextlib.suppress(AttributeError, OSError):
            if self._ns_pidfd is not None:
                os.close(self._ns_pidfd)
                self._ns_pidfd = None
        super().__del__(*args, **kwargs)


class Sandbox:
    """Runs commands on a worker tree with a scratch folder, inside bubblewrap (``isolate=True``) or, only when the
    caller asks (``--no-sandbox``), as plain processes with limits."""

    def __init__(
        self,
        tree: Path,
        scratch: Path,
        limits: Limits,
        isolate: bool = True,
        readonly: dict[str, Path] | None = None,
        *,
        _checked: bool = False,
    ):
        """``tree``: the worker tree, read-only inside at ``/course`` (the working folder). ``scratch``: a fresh
        private folder, writable inside at ``/scratch`` (``HOME``, ``TMPDIR`` below it), which no later run may
        read. ``readonly``: more read-only binds, mount point inside -> host folder (the datasets); a mount point
        must not lie inside the tree. ``isolate=False``: no sandbox, see the module's documentation."""
        self.tree = Path(tree).resolve()
        self.scratch = Path(scratch).resolve()
        self.limits = limits
        self.isolate = isolate
        self.readonly = {os.path.normpath(k): Path(v).resolve() for k, v in (readonly or {}).items()}
        for what, path in (("worker tree", self.tree), ("scratch folder", self.scratch)):
            if not path.is_dir():
                raise ValueError(f"the sandbox's {what} {path} is not a folder")
        for inside, host in self.readonly.items():
            if not inside.startswith("/") or inside in ("/", TREE_INSIDE, SCRATCH_INSIDE):
                raise ValueError(f"read-only bind {inside!r}: the mount point must be an absolute path of its own")
            if _within(inside, TREE_INSIDE) or _within(inside, SCRATCH_INSIDE):
                raise ValueError(f"read-only bind {inside!r}: mount points inside {TREE_INSIDE} or scratch are refused")
            if not host.exists():
                raise ValueError(f"read-only bind {inside!r}: {host} does not exist")
        if isolate and not _checked:
            ok, why = sandbox_status()
            if not ok:
                raise SandboxUnavailable(why)
        self._bwrap = _bwrap() if isolate else None
        self._python = _python_dirs() if isolate else []
        self._uid = SANDBOX_UID if isolate and _is_root() else os.getuid()
        self._gid = SANDBOX_UID if isolate and _is_root() else os.getgid()
        (self.scratch / "tmp").mkdir(exist_ok=True)
        if isolate and _is_root():
            self._hand_over()
        self._procs: list[SandboxProcess] = []
        self._lock = threading.Lock()

    # -- set-up ----------------------------------------------------------------------------------------------

    def _hand_over(self) -> None:
        """As root: the scratch folder becomes the sandbox user's, and what it reads must be readable by others."""
        for dirpath, dirnames, filenames in os.walk(self.scratch):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, self._uid, self._gid, follow_symlinks=False)
        self.scratch.chmod(0o700)
        for path in [self.tree, *self.readonly.values(), *map(Path, self._python)]:
            mode = path.stat().st_mode
            if stat.S_ISDIR(mode) and mode & 0o005 != 0o005:
                raise ValueError(
                    f"{path} is not readable by other users (mode {stat.S_IMODE(mode):o}); the sandbox runs as uid "
                    f"{SANDBOX_UID} when grading as root, so give it read access (chmod o+rX) or use another folder"
                )

    def _etc(self) -> list[str]:
        """A minimal /etc: the dynamic linker's cache, time zone, and made-up users, hosts and name services."""
        args: list[str] = []
        for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives"):
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        home = SCRATCH_INSIDE
        files = {
            "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{self._uid}:{self._gid}::{home}:/bin/sh\n",
            "group": f"root:x:0:\nsandbox:x:{self._gid}:\n",
            "hosts": "127.0.0.1 localhost\n::1 localhost\n",
            "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        }
        for name, text in files.items():
            args += ["--ro-bind-data", str(_data_fd(text)), f"/etc/{name}"]
        return args

    def _filesystem(self) -> list[str]:
        """The bubblewrap arguments that build the sandbox's filesystem."""
        size = str(self.limits.scratch_bytes)
        args = ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += self._etc()
        for d in self._python:
            args += ["--ro-bind", d, d]
        if self._bwrap and not _within(os.path.realpath(self._bwrap), "/usr"):
            args += ["--ro-bind", os.path.realpath(self._bwrap), os.path.realpath(self._bwrap)]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        args += ["--ro-bind", str(self.tree), TREE_INSIDE]
        for inside, host in self.readonly.items():
            args += ["--ro-bind", str(host), inside]
        args += ["--bind", str(self.scratch), SCRATCH_INSIDE]
        args += ["--remount-ro", "/", "--chdir", TREE_INSIDE]
        # The folders above a mount point are made by bubblewrap; readable by all (as root it would copy the
        # host's, and the sandbox user could not reach an interpreter under /root).
        above = {str(p) for i, a in enumerate(args) if a in _BINDS for p in Path(args[i + 2]).parents}
        made = [arg for d in sorted(above - {"/", "/tmp"}) for arg in ("--perms", "0755", "--dir", d)]
        # the private /tmp first, so that an environment that lives below /tmp (a clone in /tmp) is bound over it
        tmp = ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
        return tmp + made + args

    def _limit_opts(self) -> list[str]:
        lim = self.limits
        opts = [f"AS={lim.memory_bytes}", f"CPU={lim.cpu_seconds}", f"FSIZE={lim.scratch_bytes}", "CORE=0"]
        if self.isolate:
            opts.append(f"NPROC={lim.processes}")
        elif not _is_root() and sys.platform.startswith("linux"):
            # Without a user namespace the kernel counts every process of the grader's user: allow the ones
            # running now plus the sandbox's own.
            opts.append(f"NPROC={_tasks_of(os.getuid()) + lim.processes}")
        if not sys.platform.startswith("linux"):
            opts = [o.replace("=", "?=", 1) for o in opts]
        return opts

    def _command(
        self, argv: list[str], pass_fds: tuple[int, ...], info_fd: int | None = None, ready_fd: int | None = None
    ) -> list[str]:
        keep = "keep=" + ",".join(map(str, pass_fds))
        launch = [sys.executable, "-I", "-S", "-c", _LAUNCHER]
        ready = [f"ready={ready_fd}"] if ready_fd is not None else []
        inner = [*launch, *self._limit_opts(), keep, "--", *argv]
        if not self.isolate:
            return inner
        assert self._bwrap is not None
        inner[len(launch) : len(launch)] = [] if _is_root() else ready
        common = ["--die-with-parent", "--new-session"]
        if not _is_root():
            return [
                self._bwrap,
                "--unshare-all",
                "--unshare-user",
                "--disable-userns",
                "--hostname",
                "sandbox",
                *common,
                *(["--info-fd", str(info_fd)] if info_fd is not None else []),
                *self._filesystem(),
                "--",
                *inner,
            ]
        # Root: a privileged bubblewrap builds the namespaces (all but the user's) and the filesystem, keeping
        # only the right to change user; the launcher drops to the sandbox user; an unprivileged bubblewrap adds
        # the user namespace (the processes limit is counted in it) and forbids nested ones.
        unprivileged = [self._bwrap, "--unshare-user", "--disable-userns", *common, "--dev-bind", "/", "/"]
        unprivileged += ["--chdir", TREE_INSIDE, "--", *inner]
        return [
            self._bwrap,
            *("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"),
            "--hostname",
            "sandbox",
            *("--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"),
            *common,
            *(["--info-fd", str(info_fd)] if info_fd is not None else []),
            *self._filesystem(),
            "--",
            *launch,
            *ready,
            f"uid={self._uid}",
            keep,
            "--",
            *unprivileged,
        ]

    # -- running ---------------------------------------------------------------------------------------------

    def path_inside(self, host_path: Path) -> str:
        """How ``host_path`` (in the tree, the scratch folder or a read-only bind) is seen by the sandbox."""
        host = Path(host_path).resolve()
        if not self.isolate:
            return str(host)
        for inside, top in [(TREE_INSIDE, self.tree), (SCRATCH_INSIDE, self.scratch), *self.readonly.items()]:
            if host == top or top in host.parents:
                return str(Path(inside, host.relative_to(top)))
        raise ValueError(f"{host_path} is not visible inside the sandbox (neither in the tree, scratch nor a bind)")

    def popen(
        self, argv: list[str], *, env: dict[str, str], pass_fds: tuple[int, ...] = (), log: Path | None = None
    ) -> SandboxProcess:
        """Start ``argv`` in the sandbox, in the worker tree, with ``env`` (plus ``HOME`` and ``TMPDIR`` in the
        scratch folder unless given). ``argv[0]`` must be visible inside: ``sys.executable`` is.

        stdout and stderr are appended to ``log`` (at most ``output_bytes``; then the pipe is closed) or lost. The file
        descriptors in ``pass_fds`` stay open in the command (a socket to talk to it); no other descriptor of the
        grader reaches it. The sandbox ends when the grader's process ends."""
        home = self.path_inside(self.scratch)
        full_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **env}
        full_env.setdefault("HOME", home)
        full_env.setdefault("TMPDIR", str(Path(home, "tmp")))
        out_r, out_w = os.pipe()
        info_r, info_w = os.pipe() if self.isolate else (None, None)
        ready_r, ready_w = os.pipe() if self.isolate else (None, None)
        try:
            cmd = self._command(list(argv), tuple(pass_fds), info_w, ready_w)
            data_fds = [int(cmd[i + 1]) for i, a in enumerate(cmd) if a == "--ro-bind-data"]
            spawn = functools.partial(
                SandboxProcess,
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=out_w,
                env=full_env,
                cwd=self.tree,
                pass_fds=(*pass_fds, *data_fds, *(fd for fd in (info_w, ready_w) if fd is not None)),
                start_new_session=True,
            )
            try:
                # bubblewrap dies with the thread that started it (the parent-death signal is per thread), so it
                # is started from a thread that lives as long as the grader, not from the caller's.
                proc = _SPAWNER.submit(spawn).result() if self.isolate else spawn()
            finally:
                for fd in data_fds:
                    os.close(fd)
        except BaseException:
            for fd in (out_r, info_r, ready_r):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, info_w, ready_w):
                if fd is not None:
                    os.close(fd)
        proc.isolated = self.isolate
        proc.exceeded = []
        proc._ns_pidfd = None
        proc._drain = None
        if info_r is not None:
            proc._ns_pidfd = self._read_info(info_r, proc)
        with self._lock:
            self._procs.append(proc)
        # the log exists once popen returns
        sink = open(log, "ab", buffering=0) if log is not None else None  # noqa: SIM115 (the drain closes it)
        proc._drain = threading.Thread(target=self._drain, args=(proc, out_r, sink), daemon=True)
        proc._drain.start()
        if ready_r is not None:
            # Returns once the command is about to start (or bubblewrap has failed): bubblewrap's first process
            # in the sandbox binds its life to bubblewrap's only when set up, so a grader that dies sooner would
            # leave the sandbox behind.
            with os.fdopen(ready_r, "rb") as ready_pipe:
                select.select([ready_pipe], [], [], 30)
        return proc

    def _read_info(self, info_r: int, proc: SandboxProcess) -> int | None:
        """A pidfd of the sandbox's first process (killing it ends the PID namespace), from bubblewrap's report."""
        with os.fdopen(info_r, "rb") as info:
            ready, _, _ = select.select([info], [], [], 30)
            text = info.read() if ready else b""
        try:
            pid = int(json.loads(text)["child-pid"])
        except (ValueError, KeyError):
            return None  # bubblewrap stopped before the sandbox existed: its message is in the log
        try:
            return os.pidfd_open(pid)
        except ProcessLookupError:
            return None

    def _drain(self, proc: SandboxProcess, out_r: int, sink: io.RawIOBase | None) -> None:
        """Copy the command's output to the log up to the limit, and watch the scratch folder, until the end."""
        cap = self.limits.output_bytes
        written = 0
        last_watch = time.monotonic()
        try:
            while True:
                if out_r >= 0:
                    ready, _, _ = select.select([out_r], [], [], WATCH_SECONDS)
                    chunk = os.read(out_r, 1 << 16) if ready else None
                    if chunk == b"":
                        os.close(out_r)
                        out_r = -1
                    elif chunk:
                        if sink is not None:
                            sink.write(chunk[: max(0, cap - written)])
                        written += len(chunk)
                        if written > cap:
                            proc.exceeded.append(f"output: more than {cap} bytes written; the rest was cut")
                            if sink is not None:
                                sink.write(f"\n[sandbox: output cut after {cap} bytes]\n".encode())
                            os.close(out_r)
                            out_r = -1
                if out_r < 0:
                    if proc.poll() is not None:
                        break
                    time.sleep(WATCH_SECONDS / 5)
                if time.monotonic() - last_watch >= WATCH_SECONDS:
                    last_watch = time.monotonic()
                    why = _scratch_over(self.scratch, self.limits.scratch_bytes)
                    if why:
                        proc.exceeded.append(f"scratch: {why}")
                        if sink is not None:
                            sink.write(f"\n[sandbox: killed, {why}]\n".encode())
                        self.kill()
                        break
        finally:
            if out_r >= 0:
                os.close(out_r)
            if sink is not None:
                sink.close()

    def kill(self) -> None:
        """End every process started by :meth:`popen` and wait until they are gone. In the sandbox the first
        process of its PID namespace is killed; the kernel then kills every other process in the namespace
        (daemons too) and that first process is gone only after them, and bubblewrap only after it. Without the
        sandbox, the process group of the command's session is killed: a process that left it survives (that
        mode promises no more)."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc._ns_pidfd is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(proc._ns_pidfd, signal.SIGKILL)
            elif not self.isolate:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        for proc in procs:
            try:
                proc.wait(timeout=30)  # in the sandbox, also until its first process (and so all) is gone
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tasks_of(uid: int) -> int:
    """How many processes and threads ``uid`` runs now (what the kernel's per-user process limit counts)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def main() -> int:
    """``python -m instructor.sandbox``: say whether this machine can sandbox submissions, and if not, why."""
    ok, why = sandbox_status()
    print(f"sandbox: {'ready' if ok else 'unavailable'} ({why})")
    if ok and _is_root():
        print(f"sandbox: grading as root, submissions run as uid {SANDBOX_UID}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
