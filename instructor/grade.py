"""Grade students' submissions per exercise: ``python -m instructor.grade SUBMISSION`` or ``--class DIR``.

(``make grade SUBMISSION=PATH`` / ``make grade SUBMISSIONS=DIR``.)

For each submission (a student's course folder or a .zip of it):

1. **Only the student's work is taken**: the code between the student markers of each library block, the
   top-level helper functions, classes and imports the student added to those files, the code exercises
   and answers of the notebooks (matched by nbgrader ``grade_id``). It is merged into a fresh copy of the
   instructor tree, so edited tests, checks, loaders or the Makefile change nothing. A missing file, a
   syntax error in a block or a deleted block costs the exercises it touches, not the rest.
2. **Behaviour is graded**: an exercise passes when every check that can reach it passes (unit tests, or its
   notebooks in quick mode when no unit test reaches it). First all the student's code runs together; an
   exercise whose checks fail there is graded again in isolation, with the student's family of functions
   and the reference everywhere else, so a wrong layer costs its own exercise and not the models built on it.
3. **Untrusted code**: every run is a separate process group in the submission's own temporary copy, with a
   time limit per test, per run and per submission and a memory limit; as root each submission also runs as
   its own unprivileged user, so it can write neither the instructor tree nor another submission.

Writes ``<out>/<student>.json`` per submission, ``<out>/gradebook.csv`` (a row per student, a column per
exercise and per written answer to fill in, a total), and ``<out>/answers/`` (one Markdown and HTML file per
written question, every student's answer under it).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from instructor.exercises import Exercise, answer_points, group, load_points
from instructor.markers import (
    ANSWER_STUB,
    BEGIN,
    END,
    STUB_TAG,
    STUDENT_BEGIN,
    STUDENT_END,
    Block,
    all_blocks,
    fill_notebook,
    fill_python,
    notebook_work,
    parse_python,
    parse_python_tolerant,
    read_notebook,
    write_notebook,
)
from instructor.reach import ReachMap
from instructor.workspace import QUICK_CHECK_ENV, copy_instructor_tree
from tools.checklist import read_junit

ROOT = Path(__file__).resolve().parent.parent
#: Test folders whose tests decide grades (tests/grading holds the grader's own tests).
CHECK_FOLDERS = ("tests",)
EXCLUDED_TEST_DIRS = ("tests/grading/",)

LIMITS = {
    "test_seconds": 30,  # one test (the slowest check of a correct solution takes a few seconds)
    "run_seconds": 900,  # one pytest run (all of a submission's code together)
    "isolated_seconds": 300,  # one exercise graded in isolation
    "notebook_seconds": 600,  # one notebook
    "submission_seconds": 1800,  # everything of one submission
    "memory_bytes": 6 << 30,  # address space of each process
    "max_unzipped_bytes": 2 << 30,  # a submission's .zip, unpacked
}


# ---------------------------------------------------------------------------------------------------
# Reading a submission
# ---------------------------------------------------------------------------------------------------


def unpack(path: Path, into: Path) -> Path:
    """The course root of a submission: the folder itself, or a .zip unpacked safely into ``into``."""
    path = Path(path)
    if path.is_dir():
        root = path
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            total = 0
            for info in zf.infolist():
                target = (into / info.filename).resolve()
                if into.resolve() not in target.parents and target != into.resolve():
                    raise ValueError(f"{path.name}: refuses the archive member {info.filename!r} (outside the folder)")
                total += info.file_size
                if total > LIMITS["max_unzipped_bytes"]:
                    raise ValueError(f"{path.name}: unpacks to more than {LIMITS['max_unzipped_bytes'] >> 20} MB")
            zf.extractall(into)
        root = into
    else:
        raise ValueError(f"{path}: neither a course folder nor a .zip of one")
    candidates = [p.parent.parent for p in sorted(root.rglob("common/layers.py")) if ".venv" not in p.parts]
    if not candidates:
        return root  # nothing recognisable: every exercise is missing
    return min(candidates, key=lambda p: len(p.parts))


def _defined_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def extras(student_text: str, instructor_text: str) -> tuple[list[str], list[str]]:
    """``(imports, definitions)``: top-level imports and functions/classes of the student's file that the
    instructor's file does not have (as source text). Nothing when the student's file does not parse."""
    try:
        tree = ast.parse(student_text)
    except SyntaxError:
        return [], []
    ref = ast.parse(instructor_text)
    have = _defined_names(ref)
    ref_imports = {ast.unparse(n) for n in ref.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    lines = student_text.splitlines()
    imports, defs = [], []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            text = ast.unparse(node)
            if text not in ref_imports and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                imports.append(text)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name not in have:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            defs.append("\n".join(lines[start : node.end_lineno]))
    return imports, defs


@dataclass
class Work:
    """The student's work read from one submission."""

    bodies: dict[str, list[str] | None] = field(default_factory=dict)  # block id -> lines (None: missing)
    extras: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # file -> (imports, defs)
    answers: dict[str, str | None] = field(default_factory=dict)  # answer id -> Markdown
    problems: dict[str, str] = field(default_factory=dict)  # block id -> why it is missing


def read_work(sub_root: Path, blocks: list[Block], instructor_root: Path = ROOT) -> Work:
    work = Work()
    by_file: dict[str, list[Block]] = {}
    for b in blocks:
        by_file.setdefault(b.file, []).append(b)
    for file, file_blocks in by_file.items():
        path = sub_root / file
        if not path.is_file():
            for b in file_blocks:
                work.problems[b.id] = f"{file} is missing from the submission"
                if b.kind == "answer":
                    work.answers[b.id] = None
                else:
                    work.bodies[b.id] = None
            continue
        if file.endswith(".ipynb"):
            try:
                found = notebook_work(read_notebook(path), file)
            except (ValueError, KeyError, TypeError):
                found = {}
                for b in file_blocks:
                    work.problems[b.id] = f"{file} is not a readable notebook"
            for b in file_blocks:
                lines = found.get(b.name)
                if b.kind == "answer":
                    text = "\n".join(lines) if lines is not None else None
                    work.answers[b.id] = None if text is None or text.strip() == ANSWER_STUB else text
                else:
                    work.bodies[b.id] = lines
                    if lines is None:
                        work.problems.setdefault(b.id, f"cell {b.name!r} or its markers were deleted")
            continue
        text = path.read_text(errors="replace")
        # the student's markers; the instructor's solved tree (solution markers) grades the same way
        found = {
            **parse_python_tolerant(text, file, BEGIN, END),
            **parse_python_tolerant(text, file, STUDENT_BEGIN, STUDENT_END),
        }
        for b in file_blocks:
            work.bodies[b.id] = found.get(b.name)
            if found.get(b.name) is None:
                work.problems[b.id] = f"the markers of {b.function} in {file} were deleted or renamed"
        work.extras[file] = extras(text, (instructor_root / file).read_text())
    return work


def not_started(body: list[str] | None) -> bool:
    return (
        body is not None
        and any(STUB_TAG in line for line in body)
        and all(STUB_TAG in line or not line.strip() or line.strip().startswith("#") for line in body)
    )


# ---------------------------------------------------------------------------------------------------
# Building the tree to run
# ---------------------------------------------------------------------------------------------------


def _stub(block: Block, why: str) -> list[str]:
    return [block.indent + f"raise NotImplementedError({json.dumps(f'{block.function}: {why}')})"]


def _block_compiles(text: str) -> bool:
    try:
        compile(text, "<merged>", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def merge_file(
    instructor_text: str, file: str, blocks: list[Block], work: Work, student_ids: set[str]
) -> tuple[str, dict[str, str]]:
    """The instructor file with the student's body in each block of ``student_ids`` (the reference elsewhere)
    and the student's extra imports and helpers. A block that does not compile, or is missing, becomes a stub
    raising with the reason. Returns ``(text, {block id: problem})``."""
    problems = {}
    bodies = {}
    for b in blocks:
        if b.id not in student_ids:
            continue
        body = work.bodies.get(b.id)
        bodies[b.name] = body if body is not None else _stub(b, work.problems.get(b.id, "missing"))
    merged = fill_python(instructor_text, file, bodies, BEGIN, END, BEGIN, END)
    if not _block_compiles(merged):  # find the blocks that break it, keep the others
        for b in blocks:
            if b.name in bodies and not _block_compiles(
                fill_python(instructor_text, file, {b.name: bodies[b.name]}, BEGIN, END, BEGIN, END)
            ):
                bodies[b.name] = _stub(b, "a syntax error in your code")
                problems[b.id] = "a syntax error (or bad indentation) in the block"
        merged = fill_python(instructor_text, file, bodies, BEGIN, END, BEGIN, END)
    if any(b.id in student_ids for b in blocks):
        imports, defs = work.extras.get(file, ([], []))
        extra = "\n".join(imports + [""] + defs) if (imports or defs) else ""
        if extra and _block_compiles(merged + "\n\n" + extra):
            merged = merged.rstrip("\n") + "\n\n\n# --- added by the student ---\n" + extra + "\n"
    return merged, problems


def build_tree(
    instructor_root: Path, dest: Path, blocks: list[Block], work: Work, student_ids: set[str]
) -> dict[str, str]:
    """Write into ``dest`` (a copy of the instructor tree) the student's work for ``student_ids``."""
    problems = {}
    by_file: dict[str, list[Block]] = {}
    for b in blocks:
        if b.kind != "answer":
            by_file.setdefault(b.file, []).append(b)
    for file, file_blocks in by_file.items():
        original = instructor_root / file
        if file.endswith(".ipynb"):
            nb = read_notebook(original)
            cells = {
                b.name: (
                    work.bodies.get(b.id)
                    if work.bodies.get(b.id) is not None
                    else _stub(b, work.problems.get(b.id, "missing"))
                )
                for b in file_blocks
                if b.id in student_ids
            }
            write_notebook(fill_notebook(nb, file, cells, BEGIN, END, BEGIN, END), dest / file)
        else:
            text, found = merge_file(original.read_text(), file, file_blocks, work, student_ids)
            problems.update(found)
            (dest / file).write_text(text)
    return problems


# ---------------------------------------------------------------------------------------------------
# Running checks
# ---------------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """How a submission's processes run: its folder, environment, user and limits."""

    folder: Path
    uid: int | None = None

    def env(self, tree: Path) -> dict:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
        env.update(
            QUICK_CHECK_ENV,
            PYTHONPATH=str(tree),
            COURSE_THREADS="1",
            COURSE_CACHE_DIR=str(self.folder / "cache"),
            HOME=str(self.folder / "home"),
            TMPDIR=str(self.folder / "tmp"),
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(self.folder / "home" / ".ipython"),
        )
        return env

    def prepare(self, subtree: Path | None = None) -> None:
        """Create the box's folders and, when it runs as its own user, hand it ``subtree`` (default: all)."""
        for sub in ("cache", "home", "tmp"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        if self.uid is None:
            return
        os.chmod(self.folder, 0o700)
        for top in [subtree] if subtree is not None else [self.folder]:
            for dirpath, _, filenames in os.walk(top):
                for path in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
                    try:
                        if not os.path.islink(path):
                            os.chown(path, self.uid, self.uid)
                    except FileNotFoundError:
                        pass
        for sub in ("cache", "home", "tmp"):
            os.chown(self.folder / sub, self.uid, self.uid)
        os.chown(self.folder, self.uid, self.uid)

    def _preexec(self):
        os.setsid()
        import resource

        mem = LIMITS["memory_bytes"]
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)

    def run(self, cmd: list[str], tree: Path, timeout: float) -> tuple[int | None, str]:
        """``(returncode or None on timeout, output)``; the whole process group is killed on timeout."""
        proc = subprocess.Popen(
            cmd,
            cwd=tree,
            env=self.env(tree),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=self._preexec,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, out


def hung_blocks(results: dict[str, tuple[bool, str]], tree: Path, blocks: list[Block]) -> set[str]:
    """Ids of the blocks that tests were stuck in when their time ran out (innermost frame inside a block)."""
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for b in blocks:
        if b.kind == "code":
            spans.setdefault(b.file, [])
    for file in spans:
        path = tree / file
        if path.is_file():
            with contextlib.suppress(SyntaxError, ValueError):
                spans[file] = [(x.start, x.end, x.id) for x in parse_python(path.read_text(), file)]
    hung = set()
    for ok, message in results.values():
        if ok or not message.startswith("Timeout"):
            continue
        for frame in reversed(message.split()[1:]):
            file, _, line = frame.rpartition(":")
            rel = file[file.index("common/") :] if "common/" in file else file
            hit = [bid for start, end, bid in spans.get(rel, []) if start < int(line) - 1 < end]
            if hit:
                hung.add(hit[0])
                break
    return hung


def run_tests(
    box: Sandbox, tree: Path, tests: list[str], timeout: float, tag: str, jobs: int = 1
) -> dict[str, tuple[bool, str]]:
    """Run ``tests`` in ``tree`` (in ``jobs`` processes); every test not reported as passed counts as failed."""
    if not tests:
        return {}
    report = box.folder / "tmp" / f"junit-{tag}.xml"
    report.unlink(missing_ok=True)
    files = sorted({t.split("::")[0] for t in tests})
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *(["-n", str(jobs)] if jobs > 1 else ["-p", "no:xdist"]),
        "--no-header",
        f"--junitxml={report}",
        "-o",
        "junit_family=xunit1",
        f"--timeout={LIMITS['test_seconds']}",
        "--timeout-method=signal",
        *tests,
    ]
    code, out = box.run(cmd, tree, timeout)
    found = read_junit(report)
    why = "timed out" if code is None else "the test run crashed (see the JSON report)"
    results = {}
    for t in tests:
        if t in found:
            results[t] = found[t]
        elif code == 0 and t.split("::")[0] in files:
            results[t] = (True, "")  # deselected parametrisations and the like
        else:
            results[t] = (False, why)
    return results


def run_notebook(box: Sandbox, tree: Path, notebook: str) -> tuple[bool, str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "--nbval-lax",
        "--nbval-current-env",
        "-x",
        notebook,
    ]
    code, out = box.run(cmd, tree, LIMITS["notebook_seconds"])
    if code == 0:
        return True, ""
    if code is None:
        return False, f"{notebook} timed out"
    err = re.findall(r"^E\s+(\S.*)$", out, re.M)
    return False, f"{notebook}: {(err[-1] if err else 'a cell failed')[:160]}"


# ---------------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------------


@dataclass
class ExerciseResult:
    id: str
    points: float
    max: float
    status: str  # 'passed', 'failed', 'not started', 'missing'
    first_failure: str = ""
    checks: int = 0


def _checks_outcome(ex: Exercise, results: dict[str, tuple[bool, str]]) -> tuple[bool, str]:
    # The failure reported first is one of the tests that call the exercise by name, from the module's own
    # test file when one fails there: it points the student at the function, not at a model built on it.
    direct = set(ex.direct)
    own = f"tests/test_{Path(ex.file).stem}.py::"
    for t in sorted(ex.tests, key=lambda t: (t not in direct, not t.startswith(own))):
        ok, msg = results.get(t, (False, "not run"))
        if not ok:
            return False, f"{t}: {msg}" if msg else t
    return True, ""


def _can_run_as(uid: int) -> bool:
    """Whether this Python can run as ``uid`` (its interpreter and libraries readable by that user)."""

    def drop():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    try:
        res = subprocess.run(
            [sys.executable, "-c", "import numpy, torch"], preexec_fn=drop, capture_output=True, timeout=120, cwd="/"
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if res.returncode != 0:
        print(
            f"note: submissions run as root: this Python ({sys.executable}) cannot be run by an unprivileged "
            f"user (its folder is not readable by others), so the user-per-submission isolation is off",
            file=sys.stderr,
        )
    return res.returncode == 0


class Grader:
    """Grades submissions against one instructor tree."""

    def __init__(self, root: Path = ROOT, workers: int = 2, uid_base: int | None = None, verbose: bool = True):
        self.root = Path(root)
        self.blocks = all_blocks(self.root)
        self.reach = ReachMap.build(self.root, self.blocks, CHECK_FOLDERS)
        for table in (self.reach.tests, self.reach.direct):
            for key, tests in table.items():
                table[key] = [t for t in tests if not t.startswith(EXCLUDED_TEST_DIRS)]
        self.points = load_points()
        self.exercises = group(self.blocks, self.reach, self.points)
        self.answers = answer_points(self.blocks, self.points)
        self.workers = workers
        # the cores a submission may use for its own test processes when submissions run side by side
        self.jobs = max(1, (os.cpu_count() or 1) // max(1, workers))
        if uid_base is None and os.geteuid() == 0:
            uid_base = 61000 if _can_run_as(61000) else None
        self.uid_base = uid_base
        self.verbose = verbose

    def _log(self, text):
        if self.verbose:
            print(text, flush=True)

    def grade(self, submission: Path, slot: int = 0, jobs: int | None = None) -> dict:
        """The report of one submission (see ``render_table``); ``jobs``: its test processes (default: every
        core, as when a single submission is graded)."""
        jobs = jobs or (os.cpu_count() or 1)
        start = time.perf_counter()
        name = Path(submission).name.removesuffix(".zip")
        with tempfile.TemporaryDirectory(prefix=f"grade-{name}-") as tmp:
            tmp = Path(tmp)
            os.chmod(tmp, 0o711)
            try:
                sub_root = unpack(Path(submission), tmp / "submission")
                work = read_work(sub_root, self.blocks, self.root)
                unreadable = ""
            except (ValueError, OSError, zipfile.BadZipFile) as err:
                work, unreadable = Work(), str(err)
                for b in self.blocks:
                    (work.answers if b.kind == "answer" else work.bodies)[b.id] = None
                    work.problems[b.id] = unreadable
            box = Sandbox(tmp / "box", None if self.uid_base is None else self.uid_base + slot)
            results = self._grade_work(work, box, start, jobs)
        answers = {aid: work.answers.get(aid) for aid in self.answers}
        total = sum(r.points for r in results)
        report = {
            "student": name,
            "submission": str(submission),
            "total": total,
            "max": sum(r.max for r in results),
            "exercises": [asdict(r) for r in results],
            "answers": answers,
            "seconds": round(time.perf_counter() - start, 1),
        }
        if unreadable:
            report["error"] = unreadable
        return report

    def _grade_work(self, work: Work, box: Sandbox, start: float, jobs: int) -> list[ExerciseResult]:
        results: dict[str, ExerciseResult] = {}
        todo: list[Exercise] = []
        for ex in self.exercises:
            bodies = [work.bodies.get(b.id) for b in ex.blocks]
            if all(not_started(body) for body in bodies):
                results[ex.id] = ExerciseResult(ex.id, 0, ex.points, "not started", "the stub is still there")
            elif all(body is None for body in bodies):
                why = work.problems.get(ex.blocks[0].id, "missing")
                results[ex.id] = ExerciseResult(ex.id, 0, ex.points, "missing", why)
            else:
                todo.append(ex)
        if todo:
            student_ids = {b.id for ex in self.exercises for b in ex.blocks}
            tree = copy_instructor_tree(self.root, box.folder / "all")
            problems = build_tree(self.root, tree, self.blocks, work, student_ids)
            box.prepare()
            for _ in range(3):  # an exercise that hangs is stubbed and the run repeated without it
                tests = sorted({t for ex in todo for t in ex.tests})
                together = run_tests(box, tree, tests, LIMITS["run_seconds"], "all", jobs)
                hung = hung_blocks(together, tree, self.blocks)
                if not hung:
                    break
                for ex in [ex for ex in todo if hung & set(ex.block_ids)]:
                    results[ex.id] = ExerciseResult(
                        ex.id, 0, ex.points, "failed", "timed out: an endless loop, or far too slow", len(ex.tests)
                    )
                    todo.remove(ex)
                for b in self.blocks:
                    if b.id in hung:
                        work.bodies[b.id] = _stub(b, "timed out when graded")
                build_tree(self.root, tree, self.blocks, work, student_ids)
                box.prepare()
            for ex in todo:
                if not ex.tests:
                    continue
                ok, why = _checks_outcome(ex, together)
                if ok:
                    results[ex.id] = ExerciseResult(ex.id, ex.points, ex.points, "passed", "", len(ex.tests))

            def isolated(ex):
                if time.perf_counter() - start > LIMITS["submission_seconds"]:
                    return ExerciseResult(ex.id, 0, ex.points, "failed", "the submission ran out of time")
                return self._isolated(ex, work, box, problems)

            again = [ex for ex in todo if ex.id not in results]
            with ThreadPoolExecutor(jobs) as pool:
                for ex, result in zip(again, pool.map(isolated, again)):
                    results[ex.id] = result
        return [results[ex.id] for ex in self.exercises]

    def _isolated(self, ex: Exercise, work: Work, box: Sandbox, problems: dict[str, str]) -> ExerciseResult:
        """Grade ``ex`` with the student's family of blocks and the reference everywhere else."""
        tag = re.sub(r"\W+", "_", ex.id)
        tree = box.folder / f"iso-{tag}"
        if tree.exists():
            shutil.rmtree(tree)
        copy_instructor_tree(self.root, tree)
        build_tree(self.root, tree, self.blocks, work, {b.id for b in ex.blocks})
        box.prepare(tree)
        note = next((problems[b.id] for b in ex.blocks if b.id in problems), "")
        if ex.tests:
            res = run_tests(box, tree, ex.tests, LIMITS["isolated_seconds"], f"iso-{tag}")
            ok, why = _checks_outcome(ex, res)
            checks = len(ex.tests)
        else:
            ok, why, checks = True, "", 0
            for nb in ex.notebooks:
                checks += 1
                ok, why = run_notebook(box, tree, nb)
                if not ok:
                    break
            if not checks:
                ok, why = False, "no check reaches this exercise (run make check-release)"
        shutil.rmtree(tree, ignore_errors=True)
        if ok:
            return ExerciseResult(ex.id, ex.points, ex.points, "passed", "", checks)
        return ExerciseResult(ex.id, 0, ex.points, "failed", (note + ": " if note else "") + why, checks)

    def grade_all(self, submissions: list[Path]) -> list[dict]:
        slots = list(range(self.workers))

        def one(args):
            i, sub = args
            report = self.grade(sub, slots[i % self.workers], self.jobs)
            self._log(
                f"  graded {report['student']}: {report['total']:g} / {report['max']:g} ({report['seconds']:.0f} s)"
            )
            return report

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, enumerate(submissions)))


# ---------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------


def render_table(report: dict) -> str:
    rows = [("exercise", "points", "max", "first failure")]
    for r in report["exercises"]:
        rows.append(
            (r["id"], f"{r['points']:g}", f"{r['max']:g}", r["first_failure"] if r["status"] != "passed" else "")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * (sum(widths) + 20))
    lines.append(f"{'total':<{widths[0]}}  {report['total']:>{widths[1]}g}  {report['max']:>{widths[2]}g}")
    answered = sum(v is not None for v in report["answers"].values())
    lines.append(f"written answers: {answered} of {len(report['answers'])} given (marked by hand: see answers/)")
    return "\n".join(lines)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_gradebook(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an existing gradebook by student (column -> cell), or {} when there is none or it cannot
    be read (then it is written afresh, with a warning)."""
    if not path.exists():
        return {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"warning: {path} cannot be read ({e}); writing it afresh", file=sys.stderr)
        return {}
    return {r["student"]: r for r in rows if r.get("student") and r["student"] != "(max)"}


def write_gradebook(reports: list[dict], exercises: list[Exercise], answers: dict[str, float], path: Path) -> None:
    """Write the gradebook: a row per student, a column per exercise, per written answer and the totals.

    An existing gradebook is merged, not replaced: the rows of students not in ``reports`` stay, and the marks
    typed into the answer columns are kept for every student, so regrading one submission or recomputing the
    totals after marking by hand (``--totals``) loses nothing. Totals add up the numbers in a row; an answer
    not yet marked counts nothing. Written atomically."""
    old = read_gradebook(path)
    answer_cols = [f"{aid} (/{pts:g})" for aid, pts in answers.items()]
    ex_cols = [ex.id for ex in exercises]
    header = ["student", *ex_cols, "exercises total", *answer_cols, "answers total", "total"]
    graded = {rep["student"]: rep for rep in reports}
    rows = []
    for student in sorted(set(old) | set(graded)):
        before = old.get(student, {})
        if student in graded:
            pts = {r["id"]: r["points"] for r in graded[student]["exercises"]}
            ex_cells = [f"{pts.get(c, 0):g}" for c in ex_cols]
        else:
            ex_cells = [before.get(c) or "" for c in ex_cols]
        ans_cells = [(before.get(c) or "").strip() for c in answer_cols]
        ex_total = sum(v for v in map(_number, ex_cells) if v is not None)
        marks = [v for v in map(_number, ans_cells) if v is not None]
        ans_total = f"{sum(marks):g}" if marks else ""
        rows.append([student, *ex_cells, f"{ex_total:g}", *ans_cells, ans_total, f"{ex_total + sum(marks):g}"])
    ex_max = sum(e.points for e in exercises)
    ans_max = sum(answers.values())
    rows.append(
        ["(max)", *[f"{e.points:g}" for e in exercises], f"{ex_max:g}", *[f"{p:g}" for p in answers.values()]]
        + [f"{ans_max:g}", f"{ex_max + ans_max:g}"]
    )
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    os.replace(tmp, path)


def read_reports(folder: Path) -> list[dict]:
    """Every per-student JSON report in ``folder`` (the gradebook and answers are built from all of them)."""
    reports = []
    for p in sorted(folder.glob("*.json")):
        try:
            rep = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            print(f"warning: skipping {p}: not a readable report ({e})", file=sys.stderr)
            continue
        if isinstance(rep, dict) and {"student", "exercises", "answers"} <= rep.keys():
            reports.append(rep)
    return reports


def _question_text(root: Path, answer_id: str) -> str:
    """The Markdown cell right before an answer cell: its question."""
    file, grade_id = answer_id.split("::")
    cells = read_notebook(root / file)["cells"]
    for i, cell in enumerate(cells):
        if (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id") == grade_id:
            prev = cells[i - 1] if i else None
            return "".join(prev["source"]) if prev and prev["cell_type"] == "markdown" else ""
    return ""


def write_answers(reports: list[dict], answers: dict[str, float], root: Path, folder: Path) -> None:
    """One Markdown and one HTML file per written question, every student's answer under it."""
    import mistune

    folder.mkdir(parents=True, exist_ok=True)
    for aid, pts in answers.items():
        question = _question_text(root, aid)
        md = [f"# {aid} ({pts:g} points)", "", question, ""]
        for rep in sorted(reports, key=lambda r: r["student"]):
            text = rep["answers"].get(aid)
            md += [f"## {rep['student']}", "", text if text else "*(no answer)*", ""]
        stem = aid.replace("/", "_").replace("::", "__").removesuffix(".ipynb")
        (folder / f"{stem}.md").write_text("\n".join(md))
        body = mistune.html("\n".join(md))
        (folder / f"{stem}.html").write_text(
            "<!doctype html><meta charset='utf-8'><title>" + html.escape(aid) + "</title>"
            "<script src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js' async></script>"
            "<style>body{max-width:50em;margin:2em auto;font-family:sans-serif}h2{border-top:1px solid #ccc;"
            "padding-top:1em}</style>\n" + body
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submission", nargs="?", type=Path, help="a student's course folder or .zip")
    parser.add_argument("--class", dest="klass", type=Path, help="a folder of submissions (folders or .zip files)")
    parser.add_argument("--out", type=Path, default=ROOT / "grades", help="where reports go (default grades/)")
    parser.add_argument("--workers", type=int, default=2, help="submissions graded in parallel (default 2)")
    parser.add_argument("--list", action="store_true", help="list the exercises and answers with their points")
    parser.add_argument(
        "--totals", action="store_true", help="recompute the gradebook's totals after marking answers by hand"
    )
    args = parser.parse_args(argv)
    grader = Grader(ROOT, workers=max(1, args.workers))
    if args.totals:
        book = args.out / "gradebook.csv"
        if not book.exists():
            parser.error(f"no gradebook at {book}: grade the submissions first (make grade SUBMISSIONS=DIR)")
        write_gradebook([], grader.exercises, grader.answers, book)
        print(f"totals recomputed in {book}")
        return 0
    if args.list:
        for ex in grader.exercises:
            print(f"{ex.points:>4g}  {ex.id}  ({len(ex.tests)} tests)")
        for aid, pts in grader.answers.items():
            print(f"{pts:>4g}  {aid}  (written answer)")
        return 0
    if (args.submission is None) == (args.klass is None):
        parser.error("give one submission (SUBMISSION) or a folder of them (--class DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.submission is not None:
        report = grader.grade(args.submission)
        reports = [report]
        print(render_table(report))
    else:
        subs = sorted(p for p in args.klass.iterdir() if p.is_dir() or p.suffix == ".zip")
        if not subs:
            parser.error(f"{args.klass} holds no submissions (folders or .zip files)")
        start = time.perf_counter()
        reports = grader.grade_all(subs)
        print(f"{len(reports)} submissions graded in {time.perf_counter() - start:.0f} s")
    for rep in reports:
        (args.out / f"{rep['student']}.json").write_text(json.dumps(rep, indent=1) + "\n")
    # The gradebook and the answer files cover every report in the folder, not only this run's.
    everyone = read_reports(args.out)
    write_gradebook(everyone, grader.exercises, grader.answers, args.out / "gradebook.csv")
    write_answers(everyone, grader.answers, ROOT, args.out / "answers")
    print(f"reports, gradebook.csv and answers/ in {args.out} ({len(everyone)} students)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
