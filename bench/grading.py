"""Grading throughput: a synthetic class graded by the plain local pool (``Grader.grade_all``) and on Dask
(``instructor.cluster.grade_class`` on a local cluster), with 1 and 2 workers; submissions per minute, Dask's
overhead, and on paper what classes of 300 and 5,000 take on N workers.

Run from the repository root, under the shared lock on a shared machine (minutes of both cores):

    python -m bench.grading                      # a class of 4, 1 and 2 workers, plain tables
    python -m bench.grading --size 6 --markdown  # also Markdown (for bench/RESULTS.md)

The class: copies of the instructor tree (every exercise solved: full marks) alternating with copies of the
student edition solved except for two classic mistakes each (from ``tests/grading/wrong.py``, so each costs its
exercise and an isolated rerun). Everything runs in a snapshot of this tree taken at the start, so edits made
meanwhile change nothing. Each configuration grades the whole class afresh; the table says how many gradings
failed and whether its grades are the first configuration's.

Dask's overhead is measured twice: as the difference between Dask and the pool on the same class, and directly,
as the wall time of a run whose tasks do no grading (``noop_grade``): starting the cluster, hashing, zipping and
shipping the submissions, the workers' tree check, writing the reports, stopping the cluster.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.tables import cpu_description, render_table

ROOT = Path(__file__).resolve().parent.parent


def noop_grade(path: Path) -> dict:
    """A task that grades nothing (Dask's own cost): reads the submission's .zip and returns an empty report."""
    size = Path(path).stat().st_size
    return {
        "student": Path(path).name.removesuffix(".zip"),
        "submission": str(path),
        "total": 0,
        "max": 0,
        "exercises": [],
        "answers": {},
        "seconds": 0.0,
        "bytes": size,
    }


def make_class(into: Path, size: int) -> list[Path]:
    """``size`` submissions: solved copies of the instructor tree and editions with two mistakes, alternating."""
    from instructor.student import build
    from instructor.workspace import copy_instructor_tree
    from tests.grading.test_grading import solved_submission
    from tests.grading.wrong import WRONG

    edition = into / "edition"
    build(ROOT, edition, quiet=True)
    mistakes = sorted(WRONG)
    subs = []
    for i in range(size):
        sub = into / "class" / f"student{i:02d}"
        if i % 2 == 0:
            copy_instructor_tree(ROOT, sub)
            (sub / "datasets").unlink()  # a student's folder, not a grading tree
        else:
            picked = [mistakes[(i + k) % len(mistakes)] for k in (0, 3)]
            solved_submission(edition, sub, replace={b: WRONG[b][0] for b in picked})
        subs.append(sub)
    return subs


def _grades(reports: list[dict]) -> dict[str, dict[str, float]]:
    return {r["student"]: {e["id"]: e["points"] for e in r["exercises"]} for r in reports}


def measure(size: int, workers: list[int]) -> dict:
    """Grade a synthetic class of ``size`` with every engine and worker count; the figures as a dict."""
    import dask

    from instructor.cluster import grade_class
    from instructor.grade import Grader

    results = {"size": size, "runs": [], "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        subs = make_class(tmp, size)
        results["make_class_seconds"] = time.perf_counter() - start
        reference = None
        for w in workers:
            for engine in ("pool", "dask", "dask, no grading"):
                out = tmp / f"grades-{engine.replace(', ', '-').replace(' ', '-')}-{w}"
                start = time.perf_counter()
                if engine == "pool":
                    reports = Grader(ROOT, workers=w, verbose=False).grade_all(subs)
                elif engine == "dask":
                    reports = grade_class(subs, out, n_workers=w, regrade=True, progress=False)
                else:
                    reports = grade_class(subs, out, n_workers=w, regrade=True, progress=False, grade_fn=noop_grade)
                wall = time.perf_counter() - start
                failed = [f"{r['student']}: {r['grading_failed']}" for r in reports if "grading_failed" in r]
                for line in failed:
                    print(f"  FAILED in {engine} x{w}: {line}", flush=True)
                run = {
                    "engine": engine,
                    "workers": w,
                    "wall": wall,
                    "per_submission": [r.get("seconds", 0.0) for r in reports],
                    "failed": len(failed),
                }
                if engine != "dask, no grading":
                    grades = _grades(reports)
                    reference = reference or grades
                    run["same_grades"] = grades == reference
                    run["totals"] = [r["total"] for r in reports]
                    run["max"] = reports[0]["max"]
                else:
                    run["mb_sent"] = sum(r["bytes"] for r in reports) / 2**20
                results["runs"].append(run)
                print(f"  {engine:>17} x{w}: {wall:6.1f} s", flush=True)
        results["load_after"] = os.getloadavg()
    results["dask"] = dask.__version__
    return results


def report(results: dict, markdown: bool) -> str:
    size = results["size"]
    runs = results["runs"]
    rows = []
    for r in runs:
        graded = r["engine"] != "dask, no grading"
        rows.append(
            [
                r["engine"],
                str(r["workers"]),
                f"{r['wall']:.1f}",
                f"{size / r['wall'] * 60:.2f}" if graded else "",
                f"{sum(r['per_submission']) / size:.1f}" if graded else "",
                str(r["failed"]),
                ("yes" if r["same_grades"] else "NO") if graded else f"{r['mb_sent']:.1f} MB sent",
            ]
        )
    out = [
        render_table(
            ["engine", "workers", "wall s", "submissions/min", "mean s/submission", "failed", "same grades"],
            rows,
            markdown,
            title=f"A class of {size} (totals {runs[0]['totals']} of {runs[0]['max']:g})",
        ),
        "",
    ]
    by = {(r["engine"], r["workers"]): r for r in runs}
    lines = []
    for w in sorted({r["workers"] for r in runs}):
        pool, dk, noop = by[("pool", w)], by[("dask", w)], by[("dask, no grading", w)]
        lines.append(
            f"{w} worker(s): Dask {dk['wall'] - pool['wall']:+.1f} s against the pool on the whole class "
            f"({(dk['wall'] / pool['wall'] - 1) * 100:+.1f}%); a run that grades nothing takes {noop['wall']:.1f} s "
            f"({noop['wall'] / size:.2f} s per submission, cluster start and stop included)"
        )
    out.append("\n".join(("- " if markdown else "") + line for line in lines))
    if ("dask", 1) not in by:
        return "\n".join(out)
    # on paper: one worker = one grading at a time on its own two cores, as measured with 1 worker here
    cost = by[("dask", 1)]["wall"] / size
    out.append(
        ("- " if markdown else "")
        + f"Measured cost of one submission with 1 worker (2 cores): {cost:.1f} s of wall time "
        f"({60 / cost:.2f} submissions/min)."
    )
    est = []
    for n in (1, 2, 8, 32, 100):
        cells = [str(n)]
        for klass in (300, 5000):
            seconds = -(-klass // n) * cost
            cells.append(f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min")
        est.append(cells)
    out += [
        "",
        render_table(
            ["workers (2 cores each)", "300 submissions", "5,000 submissions"],
            est,
            markdown,
            title="On paper: ceil(class / workers) x the measured cost per submission",
        ),
    ]
    return "\n".join(out)


def machine(results: dict) -> str:
    import numpy
    import torch

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = len(os.sched_getaffinity(0))
    lb, la = results["load_before"], results["load_after"]
    return (
        f"Machine: {cpu_description()}; {cores} logical CPUs, {mem:.0f} GB; Python {platform.python_version()}, "
        f"NumPy {numpy.__version__}, torch {torch.__version__}, Dask {results['dask']}. Load average "
        f"{lb[0]:.1f} / {lb[1]:.1f} / {lb[2]:.1f} (1 / 5 / 15 min) at the start, {la[0]:.1f} / {la[1]:.1f} / "
        f"{la[2]:.1f} at the end. Building the class took {results['make_class_seconds']:.0f} s."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4, help="submissions in the class (default 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size < 2:
        parser.error("--size must be at least 2 (one submission of each kind)")
    if not args.inside:
        # run in a snapshot of the tree: the workers check theirs against it, and edits meanwhile change nothing
        from instructor.workspace import copy_instructor_tree

        with tempfile.TemporaryDirectory(prefix="bench-grading-tree-") as tmp:
            snap = copy_instructor_tree(ROOT, Path(tmp) / "tree")
            env = dict(os.environ, PYTHONPATH=str(snap))
            cmd = [sys.executable, "-m", "bench.grading", "--inside", *(argv if argv is not None else sys.argv[1:])]
            return subprocess.call(cmd, cwd=snap, env=env)
    print(f"grading a class of {args.size} with {args.workers} worker(s) (in {ROOT})", flush=True)
    results = measure(args.size, args.workers)
    print()
    print(machine(results))
    print()
    print(report(results, markdown=False))
    if args.markdown:
        print()
        print(machine(results))
        print()
        print(report(results, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
