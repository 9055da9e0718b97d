"""Review flags: honest code (the instructor's solutions, the correct alternatives and the realistic wrong
submissions) is never flagged; each construct that honest solutions never need is flagged on its own line, in
block bodies, in helpers a student adds to a library file and in notebook cells. Static reads only: fast."""

from __future__ import annotations

import functools
import json
import textwrap
from pathlib import Path

import pytest

from instructor.markers import (
    BEGIN,
    END,
    STUDENT_BEGIN,
    STUDENT_END,
    Block,
    all_blocks,
    code_solution_meta,
    fill_python,
    parse_notebook,
    parse_python,
    read_notebook,
)
from instructor.review import Flag, render_flags, review_work, summary_cell
from instructor.submission import Work, extras, read_work
from tests.grading.alternatives import ALTERNATIVES, HELPERS
from tests.grading.wrong import WRONG

ROOT = Path(__file__).resolve().parents[2]
LAYERS = "common/layers.py"
BLOCK = f"{LAYERS}::affine_forward"  # def affine_forward(x, w, b), body indented by four spaces
MARK = "# flagged"


@pytest.fixture(scope="module")
def blocks():
    return {b.id: b for b in all_blocks(ROOT) if b.kind != "answer"}


def indented(block, code: str) -> list[str]:
    return [block.indent + line if line.strip() else line for line in textwrap.dedent(code).splitlines()]


@functools.cache
def layers_blocks() -> dict[str, Block]:
    return {b.id: b for b in parse_python((ROOT / LAYERS).read_text(), LAYERS)}


def review_body(code: str, block_id: str = BLOCK) -> tuple[list[Flag], list[int]]:
    """The flags of one block body (lines counted in the block), and the lines marked ``# flagged``."""
    body = indented(layers_blocks()[block_id], code)
    marked = [i + 1 for i, line in enumerate(body) if line.rstrip().endswith(MARK)]
    return review_work(Work(bodies={block_id: body})), marked


# ---------------------------------------------------------------------------------------------------
# Honest code is not flagged
# ---------------------------------------------------------------------------------------------------


def test_the_instructors_solutions_are_not_flagged(blocks):
    flags = review_work(Work(bodies={bid: b.body for bid, b in blocks.items()}))
    assert len(blocks) > 50, "the course's blocks were not found"
    assert flags == [], render_flags(flags)


def test_correct_alternatives_and_their_helpers_are_not_flagged(blocks):
    work = Work(bodies={bid: indented(blocks[bid], code) for bid, code in ALTERNATIVES.items()})
    for file, helper in HELPERS.items():
        text = (ROOT / file).read_text()
        work.extras[file] = extras(text + helper, text)
    assert any(defs for _, defs in work.extras.values()), "the helpers were not read as added code"
    flags = review_work(work)
    assert flags == [], render_flags(flags)


def test_realistic_wrong_submissions_are_not_flagged(blocks):
    flags = review_work(Work(bodies={bid: indented(blocks[bid], code) for bid, (code, _) in WRONG.items()}))
    assert flags == [], render_flags(flags)


HONEST = {
    "an in-memory buffer for torch.save": "import io\nbuffer = io.BytesIO()\ntorch.save(w, buffer)\nout = x",
    "getattr with a constant name": 'act = getattr(np, "tanh")\nout = act(x)',
    "setattr of an own attribute": 'setattr(cache_obj, "w", w)',
    "methods named like builtins": "model.eval()\npattern = re.compile('a+')\nout = np.load_like(x)",
    "a closure over the block's own variable": "count = 0\ndef bump():\n    nonlocal count\n    count += 1\nbump()",
    "a reshape of a local array": "rows = x.reshape(N, D)\nrows.shape = (N, D)",
    "harmless sys names": "import sys\neps = sys.float_info.epsilon\nprint(sys.maxsize, file=sys.stderr)",
    "super().__init__ in a helper class": "class Box(dict):\n    def __init__(self):\n        super().__init__()",
    "strings with slashes": 'label = "loss / epoch"\nunits = "n/a"',
    "names that contain flagged words": "open_gate = x > 0\nevaluation = compile_time = 1\nexec_order = [1]",
    "a parameter that shadows a module alias": "def apply(np):\n    np.allclose = None\n    return np",
}


@pytest.mark.parametrize("code", HONEST.values(), ids=HONEST.keys())
def test_honest_constructs_are_not_flagged(code):
    flags, _ = review_body(code)
    assert flags == [], render_flags(flags)


# ---------------------------------------------------------------------------------------------------
# Each construct is flagged on its line
# ---------------------------------------------------------------------------------------------------

CASES = {
    # patching libraries the checks use
    "assign a module attribute": ("np.allclose = lambda *a, **k: True  # flagged", "assigns numpy.allclose"),
    "assign a nested module attribute": (
        "torch.testing.assert_close = print  # flagged",
        "assigns torch.testing.assert_close",
    ),
    "setattr on a module": ('setattr(np, "allclose", print)  # flagged', "assigns numpy.allclose with setattr"),
    "an imported submodule": (
        "import numpy.testing as npt\nnpt.assert_allclose = print  # flagged",
        "assigns numpy.testing.assert_allclose",
    ),
    "a module through a variable": (
        "checks = np.testing\nchecks.assert_allclose = print  # flagged",
        "assigns numpy.testing.assert_allclose",
    ),
    "modules through a loop": (
        "for lib in (np, torch):\n    lib.allclose = print  # flagged",
        "assigns numpy.allclose",
    ),
    "delete a module attribute": ("del np.allclose  # flagged", "deletes numpy.allclose"),
    "a module's __dict__": ('np.__dict__["allclose"] = print  # flagged', "changes numpy.__dict__[...]"),
    "vars of a module": ('vars(np)["allclose"] = print  # flagged', "vars(numpy)"),
    "a class through type()": ("type(x).__eq__ = lambda a, b: True  # flagged", "type(...)"),
    "a function of the course": (
        "affine_backward.__defaults__ = (1,)  # flagged",
        "assigns common.layers.affine_backward.__defaults__",
    ),
    "a from-imported module": ("from numpy import testing\ntesting.assert_allclose = print  # flagged", "assigns"),
    # code objects, globals, builtins
    "__code__": ("code = affine_backward.__code__  # flagged", "uses .__code__"),
    "__globals__": ("names = affine_backward.__globals__  # flagged", "uses .__globals__"),
    "__globals__ through getattr": ('names = getattr(affine_backward, "__globals__")  # flagged', ".__globals__"),
    "__builtins__": ("b = __builtins__  # flagged", "uses __builtins__"),
    "import builtins": ("import builtins  # flagged", "imports builtins"),
    "globals()": ('globals()["rel_error"] = None  # flagged', "calls globals"),
    "types.FunctionType": ("import types\nf = types.FunctionType(code, {})  # flagged", "types.FunctionType"),
    # exit handlers, finalizers
    "atexit": ("import atexit  # flagged", "imports atexit"),
    "atexit through __import__": ('__import__("atexit").register(print)  # flagged', "calls atexit.register"),
    "weakref.finalize": ("import weakref\nweakref.finalize(x, print)  # flagged", "weakref.finalize"),
    "__del__": ("class Late:\n    def __del__(self):  # flagged\n        pass", "defines __del__"),
    # modules and imports
    "sys.modules": ('import sys\nnumpy = sys.modules["numpy"]  # flagged', "uses sys.modules"),
    "importlib": ("import importlib  # flagged", "imports importlib"),
    "__import__": ('os_module = __import__("o" + "s")  # flagged', "calls __import__"),
    "a star import": ("from os import *  # flagged", "imports * from os"),
    # native code, processes
    "ctypes": ("import ctypes  # flagged", "imports ctypes"),
    "subprocess": ("from subprocess import run  # flagged", "imports from subprocess"),
    "subprocess through an alias": ('import subprocess as sp  # flagged\nsp.run(["ls"])  # flagged', "subprocess"),
    "os.system": ('import os\nos.system("true")  # flagged', "calls os.system"),
    "os.system imported by name": ("from os import system  # flagged", "imports os.system"),
    "os.popen": ('import os\nos.popen("true")  # flagged', "calls os.popen"),
    "os.exec*": ('import os\nos.execv("/bin/true", ["true"])  # flagged', "calls os.execv"),
    "os.fork": ("import os\nos.fork()  # flagged", "calls os.fork"),
    "os.kill": ("import os\nos.kill(1, 9)  # flagged", "calls os.kill"),
    "pty": ("import pty  # flagged", "imports pty"),
    "multiprocessing": ("import multiprocessing  # flagged", "imports multiprocessing"),
    "sys.exit": ("import sys\nsys.exit(0)  # flagged", "calls sys.exit"),
    "SystemExit": ("raise SystemExit(0)  # flagged", "SystemExit"),
    # code built at run time
    "exec": ('exec("out = x")  # flagged', "calls exec"),
    "eval": ('out = eval("x")  # flagged', "calls eval"),
    "compile": ('code = compile("x", "f", "eval")  # flagged', "calls compile"),
    "exec passed around": ("run = exec  # flagged", "uses exec"),
    # files
    "open": ('notes = open("notes.txt").read()  # flagged', "calls open"),
    "io.open": ('import io\nnotes = io.open("notes.txt")  # flagged', "calls io.open"),
    "pathlib": ("from pathlib import Path  # flagged", "imports from pathlib"),
    "a path's read_text": ("text = where.read_text()  # flagged", "calls .read_text()"),
    "a path's write_text": ('where.write_text("1.0")  # flagged', "calls .write_text()"),
    "np.load of a path": ('out = np.load("reference.npy")  # flagged', "calls numpy.load"),
    "np.save of a path": ('np.save("out.npy", x)  # flagged', "calls numpy.save"),
    "torch.load of a path": ('state = torch.load("weights.pt")  # flagged', "calls torch.load"),
    "torch.save of a path": ('torch.save(w, "weights.pt")  # flagged', "calls torch.save"),
    "pickle": ("import pickle  # flagged", "imports pickle"),
    "shutil": ("import shutil  # flagged", "imports shutil"),
    # the installation, the working folder, the instructor's files
    "sys.prefix": ("import sys\nroot = sys.prefix  # flagged", "uses sys.prefix"),
    "sys.executable": ("import sys\npython = sys.executable  # flagged", "uses sys.executable"),
    "sys.path": ('import sys\nsys.path.insert(0, "..")  # flagged', "sys.path.insert"),
    "__file__": ("here = __file__  # flagged", "uses __file__"),
    "os.environ": ('import os\nhome = os.environ["HOME"]  # flagged', "uses os.environ"),
    "os.getcwd": ("import os\nhere = os.getcwd()  # flagged", "calls os.getcwd"),
    "os.path": ('import os\nup = os.path.dirname("x")  # flagged', "calls os.path.dirname"),
    "/proc": ('maps = "/proc/self/maps"  # flagged', "'/proc/self/maps'"),
    "a parent folder": ('where = "../../common/layers.py"  # flagged', "the string"),
    "the solution markers": ('marker = "### BEGIN SOLUTION"  # flagged', "BEGIN SOLUTION"),
    "site-packages": ('where = "lib/site-packages"  # flagged', "site-packages"),
    # frames
    "inspect": ("import inspect  # flagged", "imports inspect"),
    "sys._getframe": ("import sys\nframe = sys._getframe(1)  # flagged", "calls sys._getframe"),
    "f_back": ("caller = frame.f_back  # flagged", "uses .f_back"),
    "f_locals": ("seen = frame.f_locals  # flagged", "uses .f_locals"),
    "tb_frame": ("frame = error.__traceback__.tb_frame  # flagged", "uses .tb_frame"),
    "gc.get_referrers": ('holders = __import__("gc").get_referrers(x)  # flagged', "calls gc.get_referrers"),
    "traceback": ("import traceback  # flagged", "imports traceback"),
    "breakpoint": ("breakpoint()  # flagged", "calls breakpoint"),
    # attributes by computed name
    "getattr computed": ('act = getattr(np, "ta" + "nh")  # flagged', "calls getattr with a computed name"),
    "setattr computed": ("setattr(holder, name, 1)  # flagged", "calls setattr with a computed name"),
    "delattr computed": ("delattr(holder, name)  # flagged", "calls delattr with a computed name"),
    "getattr passed around": ("lookup = getattr  # flagged", "uses getattr indirectly"),
    "operator.attrgetter computed": (
        "import operator\nget = operator.attrgetter(name)  # flagged",
        "operator.attrgetter with a computed name",
    ),
    # signals, threads, network
    "signal": ("import signal  # flagged", "imports signal"),
    "threading": ("import threading  # flagged", "imports threading"),
    "socket": ("import socket  # flagged", "imports socket"),
    "urllib": ("import urllib.request  # flagged", "imports urllib.request"),
    # the test framework
    "pytest": ("import pytest  # flagged", "imports pytest"),
    "_pytest": ("from _pytest import python  # flagged", "imports from _pytest"),
    # dunder tricks
    "__class__": ("kind = x.__class__  # flagged", "uses .__class__"),
    "__subclasses__": ("every = object.__subclasses__()  # flagged", "uses .__subclasses__"),
    "__mro__": ("chain = type(x).__mro__  # flagged", "uses .__mro__"),
    "__reduce__": ("recipe = x.__reduce__()  # flagged", "uses .__reduce__"),
    "assigning a dunder": ("holder.__class__ = object  # flagged", "assigns .__class__"),
    "__eq__ that pretends": (
        "class Anything:\n    def __eq__(self, other):  # flagged\n        return True",
        "defines __eq__",
    ),
    "__array_ufunc__": (
        "class Fake:\n    def __array_ufunc__(self, *args, **kwargs):  # flagged\n        return True",
        "defines __array_ufunc__",
    ),
    "a metaclass": ("class Odd(metaclass=Meta):  # flagged\n    pass", "with a metaclass"),
    # rebinding names defined outside the block
    "global rebinding of a library function": (
        "global affine_backward\naffine_backward = None  # flagged",
        "rebinds affine_backward (global)",
    ),
    "global rebinding of an import": ("global np\nnp = None  # flagged", "rebinds np (global)"),
    "global rebinding of a builtin": ("global print\nprint = len  # flagged", "rebinds print (global)"),
    "nonlocal rebinding of a parameter": (
        "def reset():\n    nonlocal x\n    x = None  # flagged\nreset()",
        "rebinds x (nonlocal)",
    ),
}


@pytest.mark.parametrize("code, expected", CASES.values(), ids=CASES.keys())
def test_each_construct_is_flagged_on_its_line(code, expected):
    flags, marked = review_body(code)
    assert marked, "the case marks no line"
    assert flags, f"nothing flagged in:\n{code}"
    assert {f.line for f in flags} == set(marked), render_flags(flags)
    assert any(expected in f.construct for f in flags), render_flags(flags)
    assert all(f.block == BLOCK and f.part == "affine_forward" and not f.in_file for f in flags)


def test_code_indented_out_of_its_function_is_flagged():
    # a body that closes its function: what follows runs at import, and the instructor's rest of the
    # function becomes the body of a def the student opens
    body = ["    out = x", "    return out, None", "np.allclose = print", "def _rest():"]
    flags = review_work(Work(bodies={BLOCK: body}))
    found = {(f.line, f.construct) for f in flags}
    assert (3, "a statement (assign) outside its function (at module level)") in found, render_flags(flags)
    assert (3, "assigns numpy.allclose") in found
    assert (4, "def _rest outside its function (at module level)") in found
    assert all(f.line in (3, 4) for f in flags), render_flags(flags)


def test_a_method_indented_out_into_its_class_is_flagged():
    block = "common/classifiers/fc_net.py::TwoLayerNet.loss"
    body = ["        scores = X", "    def extra(self):", "        return 1", "    def _rest(self, X, y=None):"]
    flags = review_work(Work(bodies={block: body}))
    assert {(f.line, f.construct) for f in flags} == {
        (2, "def extra outside its function (in the body of class TwoLayerNet)"),
        (4, "def _rest outside its function (in the body of class TwoLayerNet)"),
    }, render_flags(flags)


def test_code_too_deep_to_read_is_a_flag_not_a_crash():
    for depth in (900, 100_000):  # past this walk's recursion limit; past the parser's own
        flags = review_work(Work(bodies={BLOCK: ["    out = " + "-" * depth + "x"]}))
        assert [(f.line, f.construct) for f in flags] == [(1, "code nested too deeply to be read")]
    assert review_work(Work(bodies={BLOCK: ["    out = x\x00"]})) == []  # does not compile: never runs


def test_reviewing_runs_nothing(tmp_path):
    ran = tmp_path / "ran"
    flags, _ = review_body(f'open("{ran}", "w").write("x")  # flagged\nraise SystemExit(3)  # flagged')
    assert {f.construct for f in flags} >= {"calls open", "calls SystemExit"}
    assert not ran.exists()


# ---------------------------------------------------------------------------------------------------
# Lines in the submission's files: blocks, added helpers, notebook cells
# ---------------------------------------------------------------------------------------------------


def write_submission(root: Path, body: list[str], helpers: str = "") -> list[str]:
    text = (ROOT / LAYERS).read_text()
    bodies = {"affine_forward": body}
    student = fill_python(text, LAYERS, bodies, BEGIN, END, STUDENT_BEGIN, STUDENT_END) + helpers
    (root / "common").mkdir(parents=True)
    (root / LAYERS).write_text(student)
    return student.splitlines()


def marked_lines(lines: list[str], mark: str = MARK) -> set[int]:
    return {i + 1 for i, line in enumerate(lines) if line.rstrip().endswith(mark)}


def test_flags_carry_the_submissions_file_lines(tmp_path):
    body = ["    import subprocess  # flagged", "    out = x.reshape(x.shape[0], -1) @ w + b", "    cache = (x, w, b)"]
    body.append("    subprocess.run(['true'])  # flagged")
    helpers = '''

import atexit  # flagged
import _pytest.python  # flagged


class _RunNothing:
    """A helper whose class body replaces the method that runs a test."""

    _pytest.python.Function.runtest = lambda self: None  # flagged


def _forge():
    atexit.register(lambda: open(__import__("sys").argv[-1], "w").write("<testsuite/>"))  # flagged


def _positive(x):
    return x > 0
'''
    lines = write_submission(tmp_path, body, helpers)
    blocks = parse_python((ROOT / LAYERS).read_text(), LAYERS)
    work = read_work(tmp_path, blocks)
    flags = review_work(work, sub_root=tmp_path)
    assert all(f.in_file for f in flags), render_flags(flags)
    assert {f.line for f in flags} == marked_lines(lines), render_flags(flags)
    by_line = {}
    for f in flags:
        by_line.setdefault(lines[f.line - 1].strip(), set()).add(f.construct)
    assert by_line["_pytest.python.Function.runtest = lambda self: None  # flagged"] == {
        "assigns _pytest.python.Function.runtest"
    }
    forge = next(v for k, v in by_line.items() if k.startswith("atexit.register"))
    assert forge >= {"calls atexit.register", "calls open", "calls __import__", "uses sys.argv"}
    helper_flags = [f for f in flags if f.block is None]
    assert {f.part for f in helper_flags} == {"added imports", "added _RunNothing", "added _forge"}
    run_line = next(i + 1 for i, line in enumerate(lines) if "subprocess.run" in line)
    assert str(next(f for f in flags if "subprocess.run" in f.construct)) == (
        f"{LAYERS}:{run_line} affine_forward: calls subprocess.run (starts or signals processes)"
    )


def notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def code_cell(source: str, grade_id: str | None = None) -> dict:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    if grade_id:
        cell["metadata"] = {"nbgrader": code_solution_meta(grade_id), "deletable": False, "editable": True}
    return cell


def test_notebook_cells_are_read_with_the_notebooks_names(tmp_path):
    """A notebook exercise cell: IPython's shell escapes and magics are read as IPython reads them, and
    rebinding a name the notebook's other cells import or define is flagged."""
    setup = code_cell(
        "import numpy as np\nfrom common.gradient_check import rel_error\n\n"
        "def check(answer):\n    return np.allclose(answer, 1)\n"
    )
    file = "assignment1/Exercise.ipynb"
    instructor, student = tmp_path / "instructor", tmp_path / "student"
    body = [
        "answer = np.ones(3)",
        "%time total = answer.sum()",
        "import numpy as np",
        "!ls /  # flagged",
        "rel_error = lambda a, b: 0.0  # flagged",
        "def check(answer):  # flagged",
        "    return True",
        "files = %sx ls  # flagged",
    ]
    for root, (begin, end), lines in (
        (instructor, (BEGIN, END), ["answer = np.ones(3)"]),
        (student, (STUDENT_BEGIN, STUDENT_END), body),
    ):
        (root / "assignment1").mkdir(parents=True)
        cell = code_cell("\n".join(["# the answer", begin, *lines, end, "check(answer)"]), "answer")
        (root / file).write_text(json.dumps(notebook([setup, cell])))
    blocks = parse_notebook(read_notebook(instructor / file), file)
    work = read_work(student, blocks, instructor)
    in_cell = review_work(work, sub_root=student, instructor_root=instructor)
    in_block = review_work(work, instructor_root=instructor)
    expected = {i + 3 for i, line in enumerate(body) if line.endswith(MARK)}  # below the comment and marker
    assert {f.line for f in in_cell} == expected, render_flags(in_cell)
    assert {f.line for f in in_block} == {n - 2 for n in expected}, render_flags(in_block)
    constructs = {f.construct for f in in_cell}
    assert constructs == {"runs the shell command 'ls /  # flagged'", "rebinds rel_error", "rebinds check"} | {
        "runs the IPython magic %sx"
    }, render_flags(in_cell)
    assert str(next(f for f in in_cell if f.construct == "rebinds rel_error")) == (
        f"{file} cell answer, line 7: rebinds rel_error (rebinds a name defined outside the block)"
    )


# ---------------------------------------------------------------------------------------------------
# The report and the gradebook cell
# ---------------------------------------------------------------------------------------------------


def test_report_lines_and_gradebook_cell():
    flags = [
        Flag(LAYERS, "affine_forward", 123, "assigns numpy.allclose", "patching a library the checks use", True, BLOCK),
        Flag(LAYERS, "relu_forward", 2, "calls eval", "runs code built at run time", False, f"{LAYERS}::relu_forward"),
        Flag(LAYERS, "added imports", 900, "imports ctypes", "native code can change anything in the process", True),
    ]
    assert render_flags(flags).splitlines() == [
        "common/layers.py:123 affine_forward: assigns numpy.allclose (patching a library the checks use)",
        "common/layers.py relu_forward, line 2 of the block: calls eval (runs code built at run time)",
        "common/layers.py:900 added imports: imports ctypes (native code can change anything in the process)",
    ]
    assert summary_cell([]) == "" and render_flags([]) == ""
    assert summary_cell(flags[:1]) == "1 flag: common/layers.py:123 affine_forward: assigns numpy.allclose"
    assert summary_cell(flags, most=2) == (
        "3 flags: common/layers.py:123 affine_forward: assigns numpy.allclose; "
        "common/layers.py relu_forward, line 2 of the block: calls eval; and 1 more (see the report)"
    )
