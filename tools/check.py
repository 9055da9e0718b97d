"""Check one exercise in seconds: ``python -m tools.check NAME`` (``make check EXERCISE=NAME``).

Runs only the checks that decide that exercise (the tests that call its functions by name, the same ones the
checklist at the end of ``make test`` reads), stops at the first failure and prints its message: what differs
and, where the check can tell, the likely mistake. ``NAME`` is an exercise (``affine``, ``batchnorm``,
``KNearestNeighbor.compute_distances_one_loop``), one of its functions (``affine_backward``: only that
function's checks) or a unique part of a name. Without ``NAME``, lists the exercises in the order the
notebooks meet them.

The exercises and their checks come from ``tools/exercises.json`` (written with the student edition); in the
instructor's tree, where there is none, from the same reach map the edition is built with. Exits 0 when every
check passes, 1 when one fails or the exercise is not started, 2 when ``NAME`` names no exercise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.checklist import EXERCISES, ROOT, checks_of, read_junit, status

#: The environment of the checks: quick mode, no display, one thread (as ``make test`` runs them).
CHECK_ENV = {
    "COURSE_QUICK": "1",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "COURSE_THREADS": "1",
}
#: One check may take this long before it counts as stuck (an endless loop in the exercise).
TEST_SECONDS = 120


def load_rows(root: Path = ROOT) -> list[dict]:
    """The exercise table (one row per solution block, in the order the notebooks meet them), answers left out."""
    path = root / EXERCISES.relative_to(ROOT)
    if path.is_file():
        rows = json.loads(path.read_text())["exercises"]
    else:  # the instructor's tree: the table the edition would carry, computed the same way
        from instructor.markers import all_blocks
        from instructor.reach import ReachMap
        from instructor.student import exercise_table

        blocks = all_blocks(root)
        rows = exercise_table(blocks, ReachMap.build(root, blocks, test_folders=("tests",)))
    return [r for r in rows if r["kind"] != "answer"]


def by_exercise(rows: list[dict]) -> dict[str, list[dict]]:
    """``{exercise name: its rows}``, one row per function (a function with several blocks is one row)."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        group = out.setdefault(r.get("exercise") or r["function"], [])
        same = next((g for g in group if g["function"] == r["function"] and g["file"] == r["file"]), None)
        if same is None:
            group.append({**r, "tests": list(r.get("tests", [])), "direct": list(r.get("direct", []))})
        else:
            for key in ("tests", "direct"):
                same[key] += [t for t in r.get(key, []) if t not in same[key]]
    return out


def find(name: str, exercises: dict[str, list[dict]]) -> tuple[str, list[dict]]:
    """``(what was asked for, the rows whose checks to run)`` for ``name``; ValueError when it names nothing
    or several things."""
    if name in exercises:
        return name, exercises[name]
    functions = [r for rows in exercises.values() for r in rows]
    for r in functions:  # a function: only its own checks
        if name in (r["function"], r["function"].rsplit(".", 1)[-1], f"{r['file']}::{r['function']}"):
            return r["function"], [r]
    for ex, rows in exercises.items():
        if name == f"{rows[0]['file']}::{ex}":
            return ex, rows
    wanted = name.lower()
    hits = [
        ex
        for ex, rows in exercises.items()
        if wanted in ex.lower() or any(wanted in r["function"].lower() for r in rows)
    ]
    if len(hits) == 1:
        return hits[0], exercises[hits[0]]
    if hits:
        raise ValueError(f"{name!r} is part of several exercises: {', '.join(hits)}; give one of them")
    raise ValueError(f"no exercise is called {name!r}; `make check` (without EXERCISE) lists them")


def ordered_checks(rows: list[dict]) -> list[str]:
    """The checks of ``rows``, those in the test file of the exercise's own module first (its unit tests)."""
    checks = []
    for r in rows:
        checks += [c for c in checks_of(r) if c not in checks]
    own = {f"tests/test_{Path(r['file']).stem}.py::" for r in rows}
    return sorted(checks, key=lambda c: not c.startswith(tuple(own)))


def _has_timeout_plugin() -> bool:
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        return False
    return True


def run_checks(checks: list[str], root: Path = ROOT) -> dict[str, tuple[bool, str]]:
    """Run ``checks`` (test ids and notebooks) in ``root``, stopping at the first failure; ``{check: (passed,
    why)}`` for those that ran."""
    tests = [c for c in checks if not c.endswith(".ipynb")]
    notebooks = [c for c in checks if c.endswith(".ipynb")]
    env = {**os.environ, **CHECK_ENV, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    results: dict[str, tuple[bool, str]] = {}
    with tempfile.TemporaryDirectory(prefix="check-") as tmp:
        for kind, items in (("tests", tests), ("notebooks", notebooks)):
            if not items or any(not ok for ok, _ in results.values()):
                continue
            report = Path(tmp) / f"{kind}.xml"
            cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
            cmd += ["--no-header", f"--junitxml={report}", "-o", "junit_family=xunit1"]
            if kind == "notebooks":
                cmd += ["--nbval-lax", "--nbval-current-env"]
            elif _has_timeout_plugin():
                cmd += [f"--timeout={TEST_SECONDS}"]
            done = subprocess.run(cmd + items, cwd=root, env=env, capture_output=True, text=True)
            found = read_junit(report)
            if not found and done.returncode != 0:  # pytest itself failed: say what it said
                last = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()][-3:]
                results[items[0]] = (False, " / ".join(last) or f"pytest exited with code {done.returncode}")
            for item in items:
                key = item.split("::")[0] if kind == "notebooks" else item
                if key in found:
                    results[item] = found[key]
    return results


def list_exercises(exercises: dict[str, list[dict]], root: Path = ROOT) -> None:
    width = max(len(ex) for ex in exercises)
    print("Exercises, in the order the notebooks meet them ([ ] not started):\n")
    for ex, rows in exercises.items():
        started = not all(status(r, {}, root) == "not started" for r in rows)
        functions = ", ".join(r["function"].rsplit(".", 1)[-1] if "." in ex else r["function"] for r in rows)
        print(f"{'[-]' if started else '[ ]'} {ex:<{width}}  {rows[0]['file']}: {functions}")
    print("\nCheck one:  make check EXERCISE=<name>   (a function's name checks only that function)")


def main(argv=None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="", help="an exercise or function (none: list the exercises)")
    args = parser.parse_args(argv)
    exercises = by_exercise(load_rows(root))
    if not args.name:
        list_exercises(exercises, root)
        return 0
    try:
        what, rows = find(args.name, exercises)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    functions = ", ".join(r["function"] for r in rows)
    unstarted = [r["function"] for r in rows if status(r, {}, root) == "not started"]
    if len(unstarted) == len(rows):
        print(f"{what}: not started ({functions} in {rows[0]['file']} still raise NotImplementedError)")
        return 1
    checks = ordered_checks(rows)
    if not checks:
        print(f"{what}: no check reaches it")
        return 1
    print(f"{what} ({rows[0]['file']}: {functions}): {len(checks)} check{'s' * (len(checks) != 1)}")
    if unstarted:
        print(f"    not started yet: {', '.join(unstarted)} (their checks fail until they are written)")
    results = run_checks(checks, root)
    for check in checks:
        if check not in results:
            break
        ok, why = results[check]
        print(f"[{'x' if ok else '!'}] {check}")
        if not ok:
            print(f"    {why.removeprefix('AssertionError: ')}")
            rest = len(checks) - len(results)
            if rest:
                print(f"    ({rest} more check{'s' * (rest != 1)} not run: fix this one first)")
            return 1
    if len(results) < len(checks):
        print(f"{len(checks) - len(results)} checks did not run (see `make test`)")
        return 1
    print(f"{what}: all {len(checks)} checks pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
