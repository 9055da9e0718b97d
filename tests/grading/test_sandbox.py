"""The sandbox that runs submissions' code (instructor/sandbox.py), attacked by tiny worker scripts: no network, no
instructor files, no writing outside its scratch folder, no process outliving it, and each limit (processes, memory,
output, CPU time, scratch space) holding. Skipped where bubblewrap cannot run, except on CI (CI=true), where the
sandbox must work."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from instructor import sandbox
from instructor.sandbox import Limits, Sandbox, SandboxUnavailable, sandbox_status

ROOT = Path(__file__).resolve().parents[2]


def need_bubblewrap() -> None:
    ok, why = sandbox_status()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the grader's sandbox must run on CI: {why}")
        pytest.skip(why)


@pytest.fixture
def make_box(tmp_path):
    """Makes a sandbox over a small tree (``data.txt`` in it) and a fresh scratch folder; kills them all after."""
    boxes: list[Sandbox] = []

    def make(isolate: bool = True, **limits) -> Sandbox:
        if isolate:
            need_bubblewrap()
        n = len(boxes)
        tree, scratch = tmp_path / f"tree{n}", tmp_path / f"scratch{n}"
        tree.mkdir()
        scratch.mkdir()
        (tree / "data.txt").write_text("the worker tree\n")
        box = Sandbox(tree, scratch, Limits(**limits), isolate=isolate)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.kill()


def start(box: Sandbox, code: str, *args: str, pass_fds: tuple[int, ...] = (), env: dict | None = None):
    log = box.scratch.parent / f"log-{uuid.uuid4().hex}"
    proc = box.popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env or {}, pass_fds=pass_fds, log=log)
    return proc, log


def run(box: Sandbox, code: str, *args: str, timeout: float = 30, **kw) -> tuple[int, str]:
    """Run ``code`` in the sandbox to its end: its exit status and what it printed."""
    proc, log = start(box, code, *args, **kw)
    try:
        status = proc.wait(timeout=timeout)
    finally:
        box.kill()
    return status, log.read_text()


def host_pids_with(marker: str) -> list[int]:
    """The host's processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def wait_for(predicate, seconds: float = 20) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ----- what the sandbox cannot reach --------------------------------------------------------------------------


def test_no_network(make_box):
    """Only the sandbox's own loopback exists: the host's loopback server and the outside world are unreachable."""
    box = make_box()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    status, out = run(
        box,
        """
        import json, socket, sys
        result = {"interfaces": [name for _, name in socket.if_nameindex()]}
        for name, address in (("host", ("127.0.0.1", int(sys.argv[1]))), ("outside", ("1.1.1.1", 53))):
            try:
                socket.create_connection(address, timeout=3).close()
                result[name] = "connected"
            except OSError as exc:
                result[name] = type(exc).__name__
        print(json.dumps(result))
        """,
        str(port),
    )
    assert status == 0, out
    result = json.loads(out)
    assert result["interfaces"] == ["lo"]
    assert result["host"] == "ConnectionRefusedError"
    assert result["outside"] != "connected"
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()


def test_instructor_files_do_not_exist_inside(make_box, tmp_path, monkeypatch):
    """The repository, the grader's home, another submission, the grader's environment variables and processes are
    not in the sandbox; of the home, only the folders that lead to the Python installation are there."""
    other = tmp_path / "other-submission"
    other.mkdir()
    (other / "answers.py").write_text("secret = 1\n")
    monkeypatch.setenv("GRADER_SECRET", "do-not-leak")
    box = make_box()
    home = Path.home()
    probes = [ROOT, ROOT / "instructor" / "grade.py", ROOT / "tests", ROOT / "grades", other, other / "answers.py"]
    status, out = run(
        box,
        """
        import json, os, sys
        probes, home = json.loads(sys.argv[1]), sys.argv[2]
        seen = {p: os.path.exists(p) for p in probes}
        listing = sorted(os.listdir(home)) if os.path.isdir(home) else []
        commands = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                commands.append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
            except OSError:
                pass
        print(json.dumps({"seen": seen, "home": listing, "env": dict(os.environ), "commands": commands}))
        """,
        json.dumps([str(p) for p in probes]),
        str(home),
    )
    assert status == 0, out
    result = json.loads(out)
    assert result["seen"][str(ROOT)] == any(sandbox._within(d, str(ROOT)) for d in sandbox._python_dirs())
    del result["seen"][str(ROOT)]
    assert not any(result["seen"].values()), result["seen"]
    leading = {Path(d).relative_to(home).parts[0] for d in sandbox._python_dirs() if sandbox._within(d, str(home))}
    assert set(result["home"]) <= leading
    assert "GRADER_SECRET" not in result["env"]
    assert result["env"]["HOME"] == box.path_inside(box.scratch)
    ours = Path("/proc/self/cmdline").read_bytes().decode()
    assert len(result["commands"]) <= 4 and ours not in result["commands"]


def test_writes_only_in_scratch(make_box):
    """The tree, the root, the environment and the repository's path are read-only; the scratch folder is not."""
    box = make_box()
    targets = ["data.txt", "new.txt", "/new.txt", str(ROOT / "planted.txt"), sys.prefix + "/planted.txt", "/scratch/a"]
    status, out = run(
        box,
        """
        import json, sys
        result = {}
        for path in json.loads(sys.argv[1]):
            try:
                with open(path, "w") as f:
                    f.write("planted")
                result[path] = "written"
            except OSError as exc:
                result[path] = exc.strerror
        print(json.dumps(result))
        """,
        json.dumps(targets),
    )
    assert status == 0, out
    result = json.loads(out)
    assert result.pop("/scratch/a") == "written"
    assert set(result.values()) <= {"Read-only file system", "No such file or directory", "Permission denied"}, result
    assert (box.scratch / "a").read_text() == "planted"
    assert (box.tree / "data.txt").read_text() == "the worker tree\n"
    assert sorted(p.name for p in box.tree.iterdir()) == ["data.txt"]
    assert not (ROOT / "planted.txt").exists()
    assert not Path(sys.prefix, "planted.txt").exists()


def test_no_new_user_namespaces(make_box):
    """A user namespace would let the code mount its own file systems and reach more of the kernel."""
    box = make_box()
    status, out = run(box, "import subprocess\nprint(subprocess.run(['unshare', '--user', 'true']).returncode)\n")
    assert status == 0, out
    assert out.strip().splitlines()[-1] != "0", out


# ----- nothing survives ---------------------------------------------------------------------------------------

DAEMON = """
import os, socket, subprocess, sys, time
marker = "daemon-" + sys.argv[1]
# a new session (setsid) and a double fork: neither the process group nor the parent holds them any more
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", marker])
    os._exit(0)
socket.socket(fileno=int(sys.argv[2])).recv(1)  # the test says when to leave
"""


@pytest.mark.parametrize("how", ["killed", "exits"])
def test_no_process_survives(make_box, how):
    """Daemons started with setsid and a double fork are gone once kill() returns, or once the command exits."""
    box = make_box()
    tag = uuid.uuid4().hex
    ours, theirs = socket.socketpair()
    proc, log = start(box, DAEMON, tag, str(theirs.fileno()), pass_fds=(theirs.fileno(),))
    theirs.close()
    marker = "daemon-" + tag  # on the daemons' command lines only
    assert wait_for(lambda: len(host_pids_with(marker)) == 2), log.read_text()
    start_time = time.monotonic()
    if how == "killed":
        box.kill()
    else:
        ours.sendall(b"x")
        assert proc.wait(timeout=20) == 0, log.read_text()
    assert host_pids_with(marker) == []
    assert time.monotonic() - start_time < 5, "the daemons lived on until they ended by themselves"
    ours.close()


GRADER = """
import sys, time
from pathlib import Path
from instructor.sandbox import Limits, Sandbox
box = Sandbox(Path(sys.argv[1]), Path(sys.argv[2]), Limits())
box.popen([sys.executable, "-c", "import time; time.sleep(120)", sys.argv[3]], env={})
print("ready", flush=True)
time.sleep(120)
"""


def test_sandbox_dies_with_the_grader(make_box):
    """A grader killed without any chance to clean up (SIGKILL) takes its sandboxes with it."""
    box = make_box()
    marker = f"orphaned-{uuid.uuid4().hex}"
    grader = subprocess.Popen(
        [sys.executable, "-c", GRADER, str(box.tree), str(box.scratch), marker],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert grader.stdout.readline().strip() == "ready"
        assert wait_for(lambda: host_pids_with(marker))
        grader.kill()
        grader.wait()
        assert wait_for(lambda: not host_pids_with(marker), seconds=5)
    finally:
        grader.kill()
        grader.wait()
        grader.stdout.close()


def test_started_from_a_thread_that_ends(make_box):
    """bubblewrap ends a sandbox when the thread that started it ends; the sandbox starts them from a thread of
    its own, so a worker started by a short-lived thread lives on."""
    box = make_box()
    started = []
    thread = threading.Thread(target=lambda: started.append(start(box, "import time\ntime.sleep(60)\n")))
    thread.start()
    thread.join()
    proc, _ = started[0]
    time.sleep(0.5)
    assert proc.poll() is None
    box.kill()
    assert proc.returncode is not None


# ----- limits ------------------------------------------------------------------------------------------------

FORKS = """
import os, sys, time
held = 0
try:
    while held < int(sys.argv[1]):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        held += 1
    print("holding", held, flush=True)
    time.sleep(60)
except OSError as exc:
    print("refused", held, exc.errno, flush=True)
"""


def test_fork_bomb_is_contained(make_box):
    """A fork bomb stops at the processes limit, which is the sandbox's own: a second sandbox (same user when the
    grader is root) can still start its processes, and so can the host."""
    bomb, quiet = make_box(processes=24), make_box(processes=24)
    # every process forks for ever; when refused it waits a little (the CPU is shared with the test's own)
    proc, log = start(
        bomb,
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)\n",
    )
    status, out = run(quiet, FORKS, "1000")
    assert out.split()[0] == "refused" and int(out.split()[2]) == errno.EAGAIN, out
    # The limit counts the sandbox's processes and threads (its launcher and Python's included), nobody else's.
    assert 12 <= int(out.split()[1]) < 24, out
    time.sleep(0.5)
    assert proc.poll() is None, "the fork bomb should still be running (and contained)"
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
    bomb.kill()
    assert proc.returncode is not None


def test_memory_bomb_is_contained(make_box):
    box = make_box(memory_bytes=1 << 30)
    status, out = run(
        box,
        """
        chunks = []
        try:
            while True:
                chunks.append(bytearray(64 << 20))
        except MemoryError:
            print("MemoryError after", len(chunks) * 64, "MiB")
        """,
    )
    assert status == 0, out
    assert out.startswith("MemoryError after") and int(out.split()[2]) < 1024, out


def test_output_flood_is_cut(make_box):
    box = make_box(output_bytes=1 << 20)
    start_time = time.monotonic()
    proc, log = start(
        box,
        """
        import sys
        try:
            for _ in range(100_000):
                sys.stdout.buffer.write(b"x" * 65536)
        except BrokenPipeError:
            sys.exit(3)
        """,
    )
    status = proc.wait(timeout=30)
    assert time.monotonic() - start_time < 10
    text = log.read_bytes()
    assert status == 3
    assert text.startswith(b"x" * (1 << 20)) and len(text) < (1 << 20) + 200
    assert text.endswith(b"[sandbox: output cut after 1048576 bytes]\n")
    assert proc.exceeded and proc.exceeded[0].startswith("output")


def test_cpu_limit_kills_a_spinner(make_box):
    box = make_box(cpu_seconds=1)
    start_time = time.monotonic()
    proc, _ = start(box, "while True:\n    pass\n")
    proc.wait(timeout=20)
    assert proc.killed_by() in (signal.SIGXCPU, signal.SIGKILL)
    assert time.monotonic() - start_time < 5


def test_scratch_space_is_limited(make_box):
    """One file cannot outgrow the scratch space (RLIMIT_FSIZE), and many files together get the sandbox killed."""
    box = make_box(scratch_bytes=8 << 20)
    status, out = run(
        box,
        """
        try:
            open("/scratch/big", "wb").write(b"x" * (9 << 20))
        except OSError as exc:
            print(exc.errno)
        """,
    )
    assert out.strip() == str(errno.EFBIG)
    proc, log = start(
        box,
        """
        import os, time
        for i in range(64):
            with open(f"/scratch/part{i}", "wb") as f:
                f.write(os.urandom(1 << 20))
            time.sleep(0.05)
        print("all written")
        """,
    )
    proc.wait(timeout=30)
    assert "all written" not in log.read_text()
    assert proc.exceeded and proc.exceeded[0].startswith("scratch"), proc.exceeded


# ----- what the sandbox must still do ----------------------------------------------------------------------------


def test_passed_socket_is_the_only_channel(make_box):
    """A socket in pass_fds works both ways; no other descriptor of the grader is open inside."""
    box = make_box()
    ours, theirs = socket.socketpair()
    with open(__file__, "rb") as unrelated:
        proc, log = start(
            box,
            """
            import os, socket, sys
            fd = int(sys.argv[1])
            channel = socket.socket(fileno=fd)
            fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
            channel.sendall(channel.recv(64) + b":pong " + repr(fds).encode())
            """,
            str(theirs.fileno()),
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        ours.sendall(b"ping")
        ours.settimeout(20)
        answer = ours.recv(200).decode()
        assert proc.wait(timeout=20) == 0, log.read_text()
        assert unrelated.fileno() >= 0
    ours.close()
    head, fds = answer.split(" ", 1)
    assert head == "ping:pong"
    # 0, 1, 2, the socket and the folder listdir had open
    assert len(json.loads(fds)) == 5 and json.loads(fds)[:3] == [0, 1, 2]


def test_numpy_and_torch_work_inside(make_box):
    box = make_box()
    status, out = run(
        box,
        "import numpy, torch\nprint(numpy.arange(4).sum(), int(torch.ones(3, 3).sum()))\n",
        env={"OMP_NUM_THREADS": "1"},
        timeout=60,
    )
    assert status == 0, out
    assert out.split()[-2:] == ["6", "9"], out


def test_paths_inside(make_box, tmp_path):
    box = make_box()
    assert box.path_inside(box.tree / "common" / "x.py") == "/course/common/x.py"
    assert box.path_inside(box.scratch) == "/scratch"
    with pytest.raises(ValueError, match="not visible inside"):
        box.path_inside(tmp_path)


# ----- without bubblewrap --------------------------------------------------------------------------------------


def test_without_bubblewrap_the_sandbox_refuses_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    sandbox_status.cache_clear()
    try:
        ok, why = sandbox_status()
        assert not ok
        assert "bubblewrap" in why and "--no-sandbox" in why
        with pytest.raises(SandboxUnavailable, match="--no-sandbox"):
            Sandbox(tmp_path, tmp_path, Limits())
    finally:
        sandbox_status.cache_clear()


def test_no_sandbox_mode_has_its_own_session_and_limits(make_box, monkeypatch):
    """--no-sandbox: no bubblewrap needed, but the command still leads its own session, under the rlimits."""
    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    box = make_box(isolate=False, memory_bytes=2 << 30, cpu_seconds=1, scratch_bytes=8 << 20)
    status, out = run(
        box,
        """
        import json, os, resource
        limits = {n: resource.getrlimit(getattr(resource, "RLIMIT_" + n))[0] for n in ("AS", "CPU", "FSIZE")}
        print(json.dumps({"session": os.getsid(0) == os.getpid(), "cwd": os.getcwd(), **limits}))
        """,
    )
    assert status == 0, out
    assert json.loads(out) == {
        "session": True,
        "cwd": str(box.tree),
        "AS": 2 << 30,
        "CPU": 1,
        "FSIZE": 8 << 20,
    }
    proc, _ = start(box, "while True:\n    pass\n")
    proc.wait(timeout=20)
    assert proc.killed_by() in (signal.SIGXCPU, signal.SIGKILL)
    proc, log = start(box, "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    assert wait_for(lambda: "up" in log.read_text())
    box.kill()
    assert proc.killed_by() == signal.SIGKILL
