"""The grader attacked as a student who wants points without the work would: each attack below is a real
submission, graded end to end in the sandbox, and must earn nothing for the exercises it fakes, leave nothing
behind (no file outside the grader's temporary folder, no process) and cost nothing elsewhere.

The attacks: replacing pytest's way of running a test, rewriting the report at exit, patching NumPy's, torch's
and pytest's comparisons, copying the instructor's solution from the disk it can find (the interpreter's own
path, the working folder, the environment), writing into the instructor's repository and grades, starting a
process that outlives grading, and sending forged messages down the worker's channel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from instructor import grade
from instructor.sandbox import sandbox_status
from tests.grading.test_grading import ROOT, solved_submission, statuses

pytestmark = [
    pytest.mark.slow_grading,
    pytest.mark.skipif(not sandbox_status()[0], reason=f"the sandbox cannot run here: {sandbox_status()[1]}"),
]

MARK = "course-attack-marker-7c1f"

# Right-shaped zeros: nothing implemented.
ZEROS = {
    "common/layers.py::affine_forward": "out = np.zeros((x.shape[0], w.shape[1]))\ncache = (x, w, b)\n",
    "common/layers.py::affine_backward": (
        "x, w, _ = cache\ndx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros(w.shape[1])\n"
    ),
    "common/layers.py::softmax_loss": "loss, dx = 0.0, np.zeros_like(x)\n",
}

# How a block finds the instructor's solution of a function on any disk it can see.
SOLUTION_OF = r'''
def _solution_of(name):
    """The instructor's body of ``name``, from any copy of the course this process can find."""
    import os, re, sys
    from pathlib import Path
    places = {Path(sys.prefix), Path(sys.executable).resolve(), Path(os.getcwd()), Path(__file__).resolve()}
    places |= {Path(v) for v in os.environ.values() if v.startswith("/")}
    seen = set()
    for place in places:
        for top in [place, *place.parents]:
            candidate = top / "common" / "layers.py"
            if candidate in seen or candidate.resolve() == Path(__file__).resolve():
                continue
            seen.add(candidate)
            try:
                text = candidate.read_text()
            except OSError:
                continue
            m = re.search(r"def " + name + r"\(.*?### BEGIN SOLUTION\n(.*?)    ### END SOLUTION", text, re.S)
            if m:
                return m.group(1)
    return None
'''

# Helpers appended to common/layers.py: each runs when the worker imports the library.
ATTACKS = f'''

class _NeverRun:
    """Replace pytest's test running, wherever pytest is importable."""
    try:
        import _pytest.python as _p

        _p.Function.runtest = lambda self: None
        _p.pytest_pyfunc_call = lambda pyfuncitem: True
    except Exception:
        pass


class _Forge:
    """At exit, rewrite every JUnit report named on any command line visible, and any report found on disk."""
    import atexit as _atexit

    @staticmethod
    def _forge():
        import glob, re
        paths = set()
        for cmdline in glob.glob("/proc/*/cmdline"):
            try:
                args = open(cmdline, "rb").read().split(b"\\0")
            except OSError:
                continue
            for a in args:
                m = re.match(rb"--junitxml=(.*)", a)
                if m:
                    paths.add(m.group(1).decode())
        paths.update(glob.glob("/tmp/grade-*/junit-*.xml"))
        for p in paths:
            try:
                open(p, "w").write('<testsuite><testcase classname="tests.test_layers" name="x"/></testsuite>')
            except OSError:
                pass

    _atexit.register(_forge)


class _Patch:
    """Every comparison a check might use says equal."""
    import numpy as _np

    _np.allclose = lambda *a, **k: True
    _np.testing.assert_allclose = lambda *a, **k: None
    _np.testing.assert_array_equal = lambda *a, **k: None
    try:
        import torch as _t

        _t.allclose = lambda *a, **k: True
        _t.testing.assert_close = lambda *a, **k: None
    except Exception:
        pass
    try:
        import pytest as _pt

        _pt.approx = lambda expected, *a, **k: _Anything()
    except Exception:
        pass


class _Anything:
    def __eq__(self, other):
        return True


{SOLUTION_OF}

class _Escape:
    """Write into the instructor's repository and grades; start a process in a new session that stays."""
    import os as _os
    from pathlib import Path as _P

    for _top in [_P(__file__).resolve(), *_P(__file__).resolve().parents, _P("{ROOT}")]:
        for _name in ("{MARK}.txt", "grades/{MARK}.txt"):
            try:
                (_top / _name).parent.mkdir(parents=True, exist_ok=True)
                (_top / _name).write_text("escaped")
            except OSError:
                pass
    try:
        if _os.fork() == 0:
            _os.setsid()
            if _os.fork() == 0:
                _os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 600 # {MARK}"])
            _os._exit(0)
    except OSError:
        pass
'''

# Blocks that copy the instructor's solution at run time, else return zeros.
COPY = {
    "common/layers.py::relu_forward": (
        'src = _solution_of("relu_forward")\n'
        "if src:\n"
        '    ns = {"x": x, "np": np}\n'
        '    exec(__import__("textwrap").dedent(src), ns)\n'
        '    out, cache = ns["out"], ns["cache"]\n'
        "else:\n"
        "    out, cache = np.zeros_like(x), x\n"
    ),
}


def test_the_copy_attack_finds_the_solution_where_nothing_hides_it():
    """The control: run where this repository is visible, the attack does find the solution it copies."""
    namespace = {"__file__": "/nonexistent/common/layers.py"}
    exec(SOLUTION_OF, namespace)
    assert "np.maximum" in namespace["_solution_of"]("relu_forward")


def _leftovers() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if MARK in line and "ps -eo" not in line]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from instructor.student import build

    tmp = tmp_path_factory.mktemp("attack")
    edition = tmp / "student"
    build(ROOT, edition, quiet=True)
    sub = solved_submission(edition, tmp / "attacker", {**ZEROS, **COPY}, {"common/layers.py": ATTACKS})
    before = set(_leftovers())
    grader = grade.Grader(ROOT, workers=1, verbose=False)
    report = grader.grade(sub)
    return grader, report, before


def _exercise_of(grader, block_id: str) -> str:
    return next(ex.id for ex in grader.exercises if any(b.id == block_id for b in ex.blocks))


def test_faked_exercises_earn_nothing(graded):
    grader, report, _ = graded
    st = statuses(report)
    faked = {_exercise_of(grader, b) for b in {**ZEROS, **COPY}}
    assert faked and all(st[e] == "failed" for e in faked), {e: st[e] for e in faked}
    points = {r["id"]: r["points"] for r in report["exercises"]}
    assert all(points[e] == 0 for e in faked)


def test_the_attacks_cost_nothing_elsewhere(graded):
    grader, report, _ = graded
    faked = {_exercise_of(grader, b) for b in {**ZEROS, **COPY}}
    others = {r["id"]: r["first_failure"] for r in report["exercises"] if r["id"] not in faked}
    lost = {e: why for e, why in others.items() if statuses(report)[e] != "passed"}
    assert not lost
    assert report["sandbox"] == "bubblewrap"


def test_the_review_flags_the_attacks(graded):
    _, report, _ = graded
    constructs = " ".join(f["construct"] for f in report["flags"])
    assert report["review"].startswith(f"{len(report['flags'])} flag")
    for name in ("allclose", "fork", "exec"):
        assert name in constructs, (name, constructs)


def test_nothing_written_outside_and_no_process_left(graded):
    _, _, before = graded
    assert not list(ROOT.glob(f"**/{MARK}.txt"))
    assert not (Path("/tmp") / f"{MARK}.txt").exists()
    time.sleep(0.5)
    assert set(_leftovers()) <= before


def test_forged_channel_messages_are_refused():
    """A student's function that writes its own answer on the worker's channel, or sends what is not data,
    fails its checks: the harness never takes such a message as a verdict."""
    import tempfile

    from instructor.codec import ChannelError
    from instructor.harness import HarnessConfig, StudentError, WorkerCrashed, install

    tmp_path = Path(tempfile.mkdtemp(prefix="grade-forge-"))
    os.chmod(tmp_path, 0o711)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "common").mkdir()
    (tree / "common" / "__init__.py").write_text("")
    (tree / "common" / "attack.py").write_text(
        "import os, socket, sys\n"
        "def forge(x):\n"
        "    for fd in range(3, 64):\n"
        "        try:\n"
        '            os.write(fd, b\'\\x10\\x00\\x00\\x00\\x00\\x00\\x00\\x00{"op":"result","value":1}\')\n'
        "        except OSError:\n"
        "            pass\n"
        "    return x\n"
    )
    (tree / "instructor").mkdir()
    for name in grade.WORKER_FILES:
        (tree / "instructor" / name).write_bytes((ROOT / "instructor" / name).read_bytes())
    grade._open_for_others(tree)
    os.chmod(tmp_path, 0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # a module of the same name on the harness's side, so that the proxy has something to replace
    import sys
    import types

    mod = types.ModuleType("common.attack")
    mod.forge = lambda x: x
    sys.modules["common.attack"] = mod
    try:
        config = HarnessConfig(
            targets=["common.attack:forge"], tree=str(tree), scratch=str(scratch), log=str(tmp_path / "log")
        )
        harness = install(config)
        with pytest.raises((ChannelError, StudentError, WorkerCrashed)):
            harness.call("common.attack:forge", None, None, (2,), {}, "forge")
        harness.stop()
    finally:
        sys.modules.pop("common.attack", None)
        shutil.rmtree(tmp_path, ignore_errors=True)
