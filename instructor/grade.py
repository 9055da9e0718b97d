"""Grade students' submissions per exercise: ``python -m instructor.grade SUBMISSION`` or ``--class DIR``.

(``make grade SUBMISSION=PATH`` / ``make grade SUBMISSIONS=DIR``.)

For each submission (a student's course folder or a .zip of it):

1. **Only the student's work is taken**: the code between the student markers of each library block, the
   top-level helper functions, classes and imports the student added to those files, and the written answers
   of the notebooks (matched by nbgrader ``grade_id``). Edited tests, checks, loaders or the Makefile change
   nothing. A missing file, a syntax error in a block or a deleted block costs the exercises it touches.
2. **The student's code runs apart from the checks that judge it.** The student's library (the course's
   ``common/`` with every block holding the student's code or a stub, and never a solution) is a *worker tree*
   that a worker process runs inside a sandbox (``instructor/sandbox.py``: no network, no instructor files, its
   own scratch folder, limits on time, memory, processes and output). The checks run in a separate, trusted
   pytest process (``instructor/harness.py``) against the instructor's library, in which each graded function
   is a proxy: its arguments go to the worker as data, the student's function runs there, and its result comes
   back as data (``instructor/codec.py``, never pickle). So no submission can touch pytest, the tests, NumPy's
   or torch's comparisons, the report, the solutions or the grades.
3. **Behaviour is graded**: an exercise passes when every check that can reach it passes. First all the
   student's functions are proxied together; an exercise whose checks fail there is graded again on its own:
   its family of functions the student's, the instructor's everywhere else (in the harness; where the student's
   code calls a function that did not pass, the worker asks the harness to run the instructor's version), so a
   wrong layer costs its own exercise and not the models built on it.
4. **A review of what cannot be graded by behaviour**: constructs worth a look (``instructor/review.py``:
   patching libraries, reading files, starting processes ...) are listed in the report and the gradebook.

Writes ``<out>/<student>.json`` per submission, ``<out>/gradebook.csv`` (a row per student, a column per
exercise and per written answer to fill in, totals, the review flags), and ``<out>/answers/`` (one Markdown and
HTML file per written question, every student's answer under it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from dataclasses import asdict, dataclass
from pathlib import Path

from instructor.exercises import Exercise, answer_points, group, load_points
from instructor.gradebook import read_gradebook, read_reports, render_table, write_answers, write_gradebook
from instructor.harness import HarnessConfig
from instructor.markers import Block, all_blocks
from instructor.merge import build_tree
from instructor.reach import ReachMap
from instructor.review import Flag, review_work, summary_cell
from instructor.sandbox import Limits, SandboxUnavailable, sandbox_status
from instructor.submission import Work, extras, not_started, read_work, unpack
from instructor.workspace import QUICK_CHECK_ENV
from tools.checklist import read_junit

ROOT = Path(__file__).resolve().parent.parent

CHECK_FOLDERS = ("tests",)
EXCLUDED_TEST_DIRS = ("tests/grading/",)

#: What one submission may use (see ``instructor.sandbox.Limits``).
LIMITS = Limits()

#: Set to 0 to grade without the sandbox (``--no-sandbox``; Dask workers inherit it).
NO_SANDBOX_ENV = "COURSE_GRADE_NO_SANDBOX"

#: The files of ``instructor/`` a worker tree holds: the worker and its channel, nothing else.
WORKER_FILES = ("__init__.py", "codec.py", "worker.py")

__all__ = [
    "LIMITS",
    "Exercise",
    "Grader",
    "extras",
    "not_started",
    "read_gradebook",
    "read_reports",
    "render_report",
    "render_table",
    "unpack",
    "write_answers",
    "write_gradebook",
]


# ---------------------------------------------------------------------------------------------------
# The worker tree and one run of the harness
# ---------------------------------------------------------------------------------------------------


def target_of(block: Block) -> str:
    """The harness's name of a library block's function: ``common.layers:affine_forward``."""
    return f"{block.file.removesuffix('.py').replace('/', '.')}:{block.function}"


def _open_for_others(top: Path) -> None:
    """Make ``top`` readable (and its folders enterable) by the sandbox's unprivileged user."""
    for dirpath, _, filenames in os.walk(top):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644 | (os.stat(path).st_mode & 0o111))


def build_worker_tree(root: Path, dest: Path, blocks: list[Block], work: Work, student_ids: set[str]) -> dict:
    """The tree a worker runs: ``common/`` with the student's work in the blocks of ``student_ids`` (the
    instructor's code in the others) and the worker's own files; no tests, no notebooks, nothing else.
    Returns ``{block id: problem}`` for blocks that could not be used as written."""
    shutil.copytree(
        root / "common", dest / "common", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    (dest / "instructor").mkdir()
    for name in WORKER_FILES:
        shutil.copy2(root / "instructor" / name, dest / "instructor" / name)
    code = [b for b in blocks if b.kind == "code" and b.file.startswith("common/")]
    problems = build_tree(root, dest, code, work, student_ids)
    _open_for_others(dest)
    return problems


@dataclass
class Run:
    """Where one harness run keeps its files."""

    folder: Path
    tag: str


def run_harness(
    root: Path,
    tree: Path,
    targets: list[str],
    tests: list[str],
    run: Run,
    limits: Limits,
    isolate: bool,
    jobs: int = 1,
    timeout: float | None = None,
    references: list[str] = (),
) -> dict[str, tuple[bool, str]]:
    """Run the instructor's ``tests`` (in ``jobs`` processes) with ``targets`` proxied into a worker on ``tree``,
    whose calls to ``references`` come back to the instructor's versions; ``{test: (passed, why not)}``, where
    every test not reported as passed counts as failed."""
    if not tests:
        return {}
    scratch = run.folder / f"scratch-{run.tag}"
    scratch.mkdir(parents=True, exist_ok=True)
    datasets = (root / "datasets").resolve()
    readonly = {"/datasets": str(datasets)} if isolate and datasets.is_dir() else {}
    config = HarnessConfig(
        targets=targets,
        tree=str(tree),
        scratch=str(scratch),
        log=str(run.folder / f"worker-{run.tag}.log"),
        call_seconds=limits.test_seconds,
        isolate=isolate,
        limits=asdict(limits),
        readonly=readonly,
        env={"COURSE_DATA_DIR": "/datasets" if readonly else str(datasets)},
        references=list(references),
    )
    cfg_path = run.folder / f"harness-{run.tag}.json"
    config.save(cfg_path)
    report = run.folder / f"junit-{run.tag}.xml"
    report.unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(
        QUICK_CHECK_ENV,
        PYTHONPATH=str(root),
        COURSE_HARNESS=str(cfg_path),
        COURSE_THREADS="1",
        COURSE_CACHE_DIR=str(run.folder / "cache"),
    )
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "instructor.harness",
        "-p",
        "no:cacheprovider",
        *(["-n", str(jobs)] if jobs > 1 else ["-p", "no:xdist"]),
        "--no-header",
        f"--junitxml={report}",
        "-o",
        "junit_family=xunit1",
        # a call into the student's code has its own limit (the harness's); this one bounds a whole test
        f"--timeout={max(120, 4 * limits.test_seconds):g}",
        "--timeout-method=signal",
        *tests,
    ]
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        proc.communicate(timeout=timeout or limits.run_seconds)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        code = None
    found = read_junit(report)
    why = "timed out" if code is None else "the checks' run crashed"
    files = {t.split("::")[0] for t in tests}
    results = {}
    for t in tests:
        if t in found:
            results[t] = found[t]
        elif code == 0 and t.split("::")[0] in files:
            results[t] = (True, "")  # deselected parametrisations and the like
        else:
            results[t] = (False, why)
    return results


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


def sandbox_wanted() -> bool:
    return os.environ.get(NO_SANDBOX_ENV, "") not in ("1", "true", "yes")


class Grader:
    """Grades submissions against one instructor tree. ``sandbox``: run students' code in the sandbox (default:
    yes, unless ``COURSE_GRADE_NO_SANDBOX=1``); without it, reports say so."""

    def __init__(
        self,
        root: Path = ROOT,
        workers: int = 2,
        verbose: bool = True,
        limits: Limits = LIMITS,
        sandbox: bool | None = None,
    ):
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
        self.limits = limits
        self.sandbox = sandbox_wanted() if sandbox is None else sandbox
        if self.sandbox:
            ok, why = sandbox_status()
            if not ok:
                raise SandboxUnavailable(why)
        self.verbose = verbose

    def _log(self, text):
        if self.verbose:
            print(text, flush=True)

    def grade(self, submission: Path, jobs: int | None = None) -> dict:
        """The report of one submission (see ``render_report``); ``jobs``: its test processes (default: every
        core, as when a single submission is graded)."""
        jobs = jobs or (os.cpu_count() or 1)
        start = time.perf_counter()
        name = Path(submission).name.removesuffix(".zip")
        flags: list[Flag] = []
        with tempfile.TemporaryDirectory(prefix=f"grade-{name}-") as tmp:
            tmp = Path(tmp)
            os.chmod(tmp, 0o711)
            try:
                sub_root = unpack(Path(submission), tmp / "submission")
                work = read_work(sub_root, self.blocks, self.root)
                unreadable = ""
                flags = review_work(work, sub_root, self.root)
            except (ValueError, OSError, zipfile.BadZipFile, RecursionError, MemoryError) as err:
                work, unreadable = Work(), str(err) or type(err).__name__
                for b in self.blocks:
                    (work.answers if b.kind == "answer" else work.bodies)[b.id] = None
                    work.problems[b.id] = unreadable
            results = self._grade_work(work, tmp, start, jobs)
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
            "sandbox": "bubblewrap" if self.sandbox else "off (graded with --no-sandbox)",
            "flags": [dataclasses.asdict(f) | {"where": f.where} for f in flags],
            "review": summary_cell(flags),
        }
        if unreadable:
            report["error"] = unreadable
        return report

    def _grade_work(self, work: Work, folder: Path, start: float, jobs: int) -> list[ExerciseResult]:
        results: dict[str, ExerciseResult] = {}
        todo: list[Exercise] = []
        for ex in self.exercises:
            bodies = [work.bodies.get(b.id) for b in ex.blocks]
            if all(not_started(body) for body in bodies):
                results[ex.id] = ExerciseResult(ex.id, 0, ex.points, "not started", "the stub is still there")
            elif all(body is None for body in bodies):
                why = work.problems.get(ex.blocks[0].id, "missing")
                results[ex.id] = ExerciseResult(ex.id, 0, ex.points, "missing", why)
            elif not ex.tests:
                why = "no check reaches this exercise (run make check-release)"
                results[ex.id] = ExerciseResult(ex.id, 0, ex.points, "failed", why)
            else:
                todo.append(ex)
        if not todo:
            return [results[ex.id] for ex in self.exercises]
        # 1. every function of the student's at once. One worker tree serves every run: the student's code (or a
        # stub) in every block, no solution anywhere
        code = [b for b in self.blocks if b.kind == "code"]
        tree = folder / "worker-tree"
        problems = build_worker_tree(self.root, tree, self.blocks, work, {b.id for b in code})
        targets = sorted({target_of(b) for b in code})
        tests = sorted({t for ex in todo for t in ex.tests})
        together = run_harness(self.root, tree, targets, tests, Run(folder, "all"), self.limits, self.sandbox, jobs)
        again = []
        for ex in todo:
            ok, _ = _checks_outcome(ex, together)
            if ok:
                results[ex.id] = ExerciseResult(ex.id, ex.points, ex.points, "passed", "", len(ex.tests))
            else:
                again.append(ex)
        # 2. each exercise that failed, on its own: its functions the student's, and wherever the student's code
        # calls a function that did not pass, the instructor's (run by the harness, never in the worker)
        passed = {ex_id for ex_id, r in results.items() if r.status == "passed"}
        unsound = {target_of(b) for ex in self.exercises if ex.id not in passed for b in ex.blocks}

        def isolated(ex: Exercise) -> ExerciseResult:
            if time.perf_counter() - start > self.limits.submission_seconds:
                return ExerciseResult(ex.id, 0, ex.points, "failed", "the submission ran out of time")
            return self._isolated(ex, tree, folder, problems, unsound)

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for ex, result in zip(again, pool.map(isolated, again)):
                results[ex.id] = result
        shutil.rmtree(tree, ignore_errors=True)
        return [results[ex.id] for ex in self.exercises]

    def _isolated(
        self, ex: Exercise, tree: Path, folder: Path, problems: dict[str, str], unsound: set[str]
    ) -> ExerciseResult:
        """Grade ``ex`` with the student's family of functions (and the partners its checks call with it) and the
        instructor's for every function in ``unsound`` (those whose checks the student's code did not pass)."""
        tag = re.sub(r"\W+", "_", ex.id)
        targets = sorted({target_of(b) for b in ex.blocks + ex.partners})
        references = sorted(unsound - set(targets))
        run, seconds = Run(folder, tag), self.limits.isolated_seconds
        res = run_harness(
            self.root, tree, targets, ex.tests, run, self.limits, self.sandbox, 1, seconds, references=references
        )
        ok, why = _checks_outcome(ex, res)
        note = next((problems[b.id] for b in ex.blocks if b.id in problems), "")
        if ok:
            return ExerciseResult(ex.id, ex.points, ex.points, "passed", "", len(ex.tests))
        return ExerciseResult(ex.id, 0, ex.points, "failed", (note + ": " if note else "") + why, len(ex.tests))

    def grade_all(self, submissions: list[Path]) -> list[dict]:
        def one(sub):
            report = self.grade(sub, self.jobs)
            self._log(
                f"  graded {report['student']}: {report['total']:g} / {report['max']:g} ({report['seconds']:.0f} s)"
            )
            return report

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, submissions))


def render_report(report: dict) -> str:
    """The table of one report, with how it was graded and what is worth a look."""
    lines = [render_table(report), f"student code ran: {report.get('sandbox', 'in a sandbox')}"]
    flags = report.get("flags") or []
    if flags:
        lines.append(f"worth a look ({len(flags)}; they cost no points by themselves):")
        lines += [f"  {f['where']}: {f['construct']} ({f['reason']})" for f in flags]
    return "\n".join(lines)


def main(argv=None) -> int:
    from instructor import cluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submission", nargs="?", type=Path, help="a student's course folder or .zip")
    parser.add_argument("--class", dest="klass", type=Path, help="a folder of submissions (folders or .zip files)")
    parser.add_argument("--out", type=Path, default=ROOT / "grades", help="where reports go (default grades/)")
    parser.add_argument("--workers", type=int, default=2, help="submissions graded in parallel (default 2)")
    parser.add_argument("--list", action="store_true", help="list the exercises and answers with their points")
    parser.add_argument(
        "--totals", action="store_true", help="recompute the gradebook's totals after marking answers by hand"
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run students' code without the sandbox (only where bubblewrap cannot run; every report says so)",
    )
    cluster.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.no_sandbox:
        os.environ[NO_SANDBOX_ENV] = "1"  # the Dask workers of a local cluster inherit it
    try:
        grader = Grader(ROOT, workers=max(1, args.workers), sandbox=not args.no_sandbox)
    except SandboxUnavailable as e:
        print(f"grade: the sandbox cannot run here: {e}", file=sys.stderr)
        print(
            "grade: fix that (make sandbox says how), or grade with --no-sandbox on a machine you can lose",
            file=sys.stderr,
        )
        return 2
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
    if not grader.sandbox:
        print("grade: WARNING: students' code runs without the sandbox (--no-sandbox)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.klass is not None:
        subs = sorted(p for p in args.klass.iterdir() if p.is_dir() or p.suffix == ".zip")
        if not subs:
            parser.error(f"{args.klass} holds no submissions (folders or .zip files)")
        start = time.perf_counter()
        try:
            reports = cluster.grade_class(
                subs, args.out, scheduler=args.scheduler, regrade=args.regrade, grader=grader, limits=grader.limits
            )
        except cluster.ClusterError as e:
            print(f"grade: {e}", file=sys.stderr)
            return 2
        print(f"{len(reports)} submissions graded in {time.perf_counter() - start:.0f} s; reports in {args.out}")
        return 0
    report = grader.grade(args.submission)
    print(render_report(report))
    (args.out / f"{report['student']}.json").write_text(json.dumps(report, indent=1) + "\n")
    # The gradebook and the answer files cover every report in the folder, not only this run's.
    everyone = read_reports(args.out)
    write_gradebook(everyone, grader.exercises, grader.answers, args.out / "gradebook.csv")
    write_answers(everyone, grader.answers, ROOT, args.out / "answers")
    print(f"report, gradebook.csv and answers/ in {args.out} ({len(everyone)} students)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
