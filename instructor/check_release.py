"""Prove the student edition sound: ``python -m instructor.check_release`` (``make check-release``).

1. **Markers**: every block pairs up, sits in a function (or a solution cell) and has a hint above it.
2. **No leak**: no non-trivial line of any solution block or written answer appears anywhere in the edition.
3. **Round trip**: the edition with the solution blocks put back is the instructor tree, file for file.
4. **Every exercise is caught**: for each block separately, the course with only that block replaced by its
   stub fails at least one unit test or notebook check. Only the checks that can reach the block (a static
   map, ``instructor.reach``) run, unit tests first, notebooks (quick mode) only when no unit test reaches it.
   A block that nothing catches is a failure: it means a check that cannot fail.

Prints the table block -> the checks that caught it, and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from instructor.markers import (
    BEGIN,
    Block,
    all_blocks,
    fill_notebook,
    fill_python,
    parse_notebook,
    parse_python,
    read_notebook,
    stub_notebook,
    stub_python,
    write_notebook,
)
from instructor.reach import ReachMap
from instructor.student import EXERCISES_JSON, ROOT, build, course_files, is_excluded, stub_message
from instructor.workspace import QUICK_CHECK_ENV, copy_instructor_tree

#: Files the edition writes itself rather than copying.
EDITION_ONLY = ("README.md", EXERCISES_JSON)
#: Lines a solution may share with given code without giving anything away.
_TRIVIAL = re.compile(r"^(return\b.*|pass|else:|try:|finally:|break|continue|\)|\]|\}|[\w\s,]+=\s*[\w.]+(\[\w+\])?)$")
MIN_LEAK_CHARS = 24


# ---------------------------------------------------------------------------------------------------
# 1-3: markers, leaks, round trip
# ---------------------------------------------------------------------------------------------------


def check_hints(blocks: list[Block]) -> list[str]:
    return [
        f"{b.id}: no hint above the block (comment lines right above {BEGIN!r})"
        for b in blocks
        if b.kind in ("code", "cell") and not any(h.strip("# ").strip() for h in b.hint)
    ]


def _normal(line: str) -> str:
    return " ".join(line.split())


def nontrivial(line: str) -> bool:
    s = _normal(line)
    if s.startswith("#") or len(s) < MIN_LEAK_CHARS:
        return False
    return not _TRIVIAL.match(s)


def find_leaks(blocks: list[Block], edition: Path) -> list[str]:
    """``file:line: text`` for every non-trivial solution/answer line found in the edition."""
    secret = {}
    for b in blocks:
        for line in b.body:
            if nontrivial(line):
                secret.setdefault(_normal(line), b.id)
    leaks = []
    for path in sorted(edition.rglob("*")):
        if not path.is_file() or path.suffix in (".so", ".png", ".gz", ".pt"):
            continue
        rel = path.relative_to(edition).as_posix()
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if path.suffix == ".ipynb":
            lines = [ln for cell in json.loads(text)["cells"] for ln in "".join(cell["source"]).splitlines()]
        else:
            lines = text.splitlines()
        for i, line in enumerate(lines, 1):
            key = _normal(line)
            if key in secret:
                leaks.append(f"{rel}:{i}: a line of {secret[key]} appears: {key[:80]}")
    return leaks


def round_trip(root: Path, edition: Path, blocks: list[Block]) -> list[str]:
    """Differences between the instructor tree and the edition with every solution put back."""
    bodies: dict[str, dict[str, list[str]]] = {}
    for b in blocks:
        bodies.setdefault(b.file, {})[b.name] = b.body
    problems = []
    expected = {f for f in course_files(root) if not is_excluded(f)}
    present = {p.relative_to(edition).as_posix() for p in edition.rglob("*") if p.is_file()}
    for rel in sorted(expected - present):
        problems.append(f"{rel}: missing from the edition")
    for rel in sorted(present - expected - set(EDITION_ONLY)):
        problems.append(f"{rel}: in the edition but not in the course")
    for rel in sorted(expected & present):
        if rel in EDITION_ONLY:
            continue
        original, student = root / rel, edition / rel
        if rel.endswith(".ipynb"):
            restored = fill_notebook(read_notebook(student), rel, bodies.get(rel, {}))
            want = read_notebook(original)
            for cell in want["cells"]:
                if cell["cell_type"] == "code":
                    cell["outputs"], cell["execution_count"] = [], None
            if restored != want:
                problems.append(f"{rel}: the restored notebook differs from the instructor's")
        elif rel in bodies:
            if fill_python(student.read_text(), rel, bodies[rel]) != original.read_text():
                problems.append(f"{rel}: the restored file differs from the instructor's")
        elif student.read_bytes() != original.read_bytes():
            problems.append(f"{rel}: differs from the instructor's although it has no exercise")
    return problems


# ---------------------------------------------------------------------------------------------------
# 4: every exercise is caught
# ---------------------------------------------------------------------------------------------------


@dataclass
class Caught:
    block: str
    checks_run: int = 0
    caught_by: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


def _env(worker: Path) -> dict:
    env = dict(os.environ, **QUICK_CHECK_ENV, PYTHONPATH=str(worker), COURSE_CACHE_DIR=str(worker / ".cache"))
    env.pop("COURSE_DATA_DIR", None)
    return env


def _failed_tests(output: str) -> list[str]:
    return sorted({m.group(1).split("[")[0] for m in re.finditer(r"^(?:FAILED|ERROR) (\S+)", output, re.M)})


def run_tests(worker: Path, nodes: list[str], timeout: float) -> tuple[list[str], str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-rfE",
        "--no-header",
        "-x",
        *nodes,
    ]
    try:
        res = subprocess.run(cmd, cwd=worker, env=_env(worker), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ["(timeout)"], "timeout"
    if res.returncode == 0:
        return [], res.stdout
    failed = _failed_tests(res.stdout)
    return failed or [f"(pytest exit {res.returncode})"], res.stdout


def run_notebook(worker: Path, notebook: str, timeout: float) -> bool:
    """True when the notebook's checks fail (quick mode, nbval)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "--nbval-current-env",
        "-x",
        notebook,
    ]
    try:
        res = subprocess.run(cmd, cwd=worker, env=_env(worker), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True
    return res.returncode != 0


def stub_one(worker: Path, block: Block, message: str) -> tuple[Path, str]:
    """Replace only ``block`` by its stub in the worker tree; returns (path, original text) to restore."""
    path = worker / block.file
    text = path.read_text()
    if block.kind == "code":
        blocks = parse_python(text, block.file)
        # stub only this block: put the other bodies back inside student markers, then restore instructor markers
        stubbed = stub_python(text, block.file, {b.name: message for b in blocks})
        keep = {b.name: b.body for b in blocks if b.name != block.name}
        new = fill_python(stubbed, block.file, keep)
        path.write_text(new)
    else:
        nb = read_notebook(path)
        blocks = parse_notebook(nb, block.file)
        stubbed = stub_notebook(nb, block.file, {b.name: message for b in blocks})
        keep = {b.name: b.body for b in blocks if b.name != block.name}
        write_notebook(fill_notebook(stubbed, block.file, keep), path)
    return path, text


def catch(block: Block, worker: Path, reach: ReachMap, message: str, test_timeout: float, nb_timeout: float) -> Caught:
    start = time.perf_counter()
    result = Caught(block.id)
    path, original = stub_one(worker, block, message)
    try:
        tests = reach.tests.get(block.id, [])
        if tests:
            result.checks_run += len(tests)
            failed, _ = run_tests(worker, tests, test_timeout)
            result.caught_by += failed
        if not result.caught_by:
            for nb in reach.notebooks.get(block.id, []):
                result.checks_run += 1
                if run_notebook(worker, nb, nb_timeout):
                    result.caught_by.append(nb)
                    break
        if not tests and not reach.notebooks.get(block.id):
            result.note = "no test or notebook refers to it"
    finally:
        path.write_text(original)
    result.seconds = time.perf_counter() - start
    return result


def check_caught(
    root: Path,
    blocks: list[Block],
    reach: ReachMap,
    workers: int,
    only: str | None,
    test_timeout: float = 300,
    nb_timeout: float = 600,
) -> list[Caught]:
    todo = [b for b in blocks if b.kind in ("code", "cell") and (only is None or only in b.id)]
    messages = {b.id: stub_message(b, reach.located.get(b.id)) for b in todo}
    with tempfile.TemporaryDirectory(prefix="check-release-") as tmp:
        dirs = [copy_instructor_tree(root, Path(tmp) / f"w{i}") for i in range(workers)]
        queues = [todo[i::workers] for i in range(workers)]

        def drain(i):
            out = []
            for b in queues[i]:
                r = catch(b, dirs[i], reach, messages[b.id], test_timeout, nb_timeout)
                status = "caught" if r.caught_by else "NOT CAUGHT"
                print(f"  {status:<10} {b.id} ({r.seconds:.1f} s)", flush=True)
                out.append(r)
            return out

        with ThreadPoolExecutor(workers) as pool:
            results = [r for part in pool.map(drain, range(workers)) for r in part]
    order = {b.id: i for i, b in enumerate(todo)}
    return sorted(results, key=lambda r: order[r.block])


def render_table(results: list[Caught]) -> str:
    lines = ["| block | caught by | checks run | s |", "|---|---|---|---|"]
    for r in results:
        by = ", ".join(r.caught_by[:3]) + (f" (+{len(r.caught_by) - 3})" if len(r.caught_by) > 3 else "")
        lines.append(f"| {r.block} | {by or '**nothing** ' + r.note} | {r.checks_run} | {r.seconds:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="blocks checked in parallel (default 2)")
    parser.add_argument("--only", help="check only blocks whose id contains this text")
    parser.add_argument("--skip-catch", action="store_true", help="markers, leaks and round trip only")
    parser.add_argument(
        "--table",
        type=Path,
        default=ROOT / "dist" / "check-release.md",
        help="where to write the block -> checks table (Markdown)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = ROOT
    blocks = all_blocks(root)
    failures = check_hints(blocks)
    print(
        f"{len(blocks)} blocks: {sum(b.kind == 'code' for b in blocks)} in library files, "
        f"{sum(b.kind == 'cell' for b in blocks)} notebook cells, {sum(b.kind == 'answer' for b in blocks)} "
        f"written answers"
    )
    with tempfile.TemporaryDirectory(prefix="student-edition-") as tmp:
        edition = Path(tmp) / "student"
        build(root, edition, quiet=True)
        leaks = find_leaks(blocks, edition)
        trip = round_trip(root, edition, blocks)
    print(f"no leak: {'ok' if not leaks else f'{len(leaks)} leaked lines'}")
    print(f"round trip: {'ok' if not trip else f'{len(trip)} differences'}")
    failures += leaks + trip
    results = []
    if not args.skip_catch:
        reach = ReachMap.build(root, blocks)
        print(f"every exercise caught ({args.workers} workers):")
        results = check_caught(root, blocks, reach, args.workers, args.only)
        missed = [r for r in results if not r.caught_by]
        failures += [
            f"{r.block}: no check fails when it is a stub ({r.note or 'its checks all passed'})" for r in missed
        ]
        table = render_table(results)
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table + "\n")
        print(table)
        if results:
            slow = max(results, key=lambda r: r.seconds)
            print(
                f"\n{len(results)} blocks checked, {len(results) - len(missed)} caught; slowest {slow.block} "
                f"({slow.seconds:.1f} s)"
            )
    total = time.perf_counter() - start
    for f in failures:
        print("FAIL", f)
    print(f"check-release: {'passed' if not failures else f'{len(failures)} failures'} in {total:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
