"""The exercise checklist that ends a student's ``make test``: each exercise passing, failing or not started.

``python -m tools.checklist [--reports DIR]`` reads ``tools/exercises.json`` (written with the student
edition), looks in each exercise's file for its stub, and reads the JUnit reports of the test run
(``.cache/test-reports/*.xml``, written by ``make test``): an exercise passes when every check that can
reach it passed. Exits 1 when any exercise is not passing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tools.markers import STUB_TAG, STUDENT_BEGIN

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "tools" / "exercises.json"
REPORTS = ROOT / ".cache" / "test-reports"


# lines of pytest's assertion report that say nothing about the failure
_PYTEST_NOISE = re.compile(r"\s*(Use -v to get (more|the full) diff|Full diff:|Omitting \d+ identical items)")
# what pytest appends to a message it shortened for the JUnit report
_JUNIT_TRUNCATED = re.compile(r"\s*\[\+\d+ more lines?; full report in element text\]")
_FRAME = re.compile(r"^(\S+\.py):(\d+):", re.M)


def _failure_message(bad: ET.Element) -> str:
    """One line saying why a test failed. pytest's message spreads one assertion over several lines ("assert a
    and b where ..."): joined, it shows which part failed; without a message, the traceback's first line. A test
    stopped by its time limit reads ``Timeout`` followed by its innermost frames, ``file:line``."""
    lines = (bad.get("message") or "").splitlines()
    raw = " ".join(" ".join(ln for ln in lines if not _PYTEST_NOISE.match(ln)).split())
    raw = _JUNIT_TRUNCATED.sub("", raw).strip()
    if not raw:
        raw = next((ln.strip() for ln in (bad.text or "").splitlines() if ln.strip()), "failed")
    message = raw if len(raw) <= 240 else raw[:239] + "…"
    if re.search(r"\bTimeout >", message):  # pytest-timeout's own ("Failed: Timeout >120.0s")
        return "Timeout " + " ".join(f"{f}:{n}" for f, n in _FRAME.findall(bad.text or ""))
    return message


def read_junit(path: Path) -> dict[str, tuple[bool, str]]:
    """``{test id: (passed, why it failed)}`` from one JUnit XML file ({} when it is missing or unreadable):
    ids like ``tests/test_x.py::test_y`` (parametrised cases are folded into their test: it passes only if
    every case passed, and keeps the first failure) and notebook paths."""
    results: dict[str, tuple[bool, str]] = {}
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError):
        return results
    for case in tree.iter("testcase"):
        bad = [child for child in case if child.tag in ("failure", "error")]
        file = case.get("file") or ""
        name = (case.get("name") or "").split("[")[0]
        classname = case.get("classname") or ""
        if file.endswith(".ipynb") or ".ipynb" in classname:
            key = file or classname
            key = key[key.index("assignment") :] if "assignment" in key else key
            key = key.split("::")[0]
        else:
            module = classname.replace(".", "/")
            key = f"{module}.py::{name}" if module else name
        ok_before, why_before = results.get(key, (True, ""))
        results[key] = (ok_before and not bad, why_before or (_failure_message(bad[0]) if bad else ""))
    return results


def failure_messages(folder: Path) -> dict[str, str]:
    """``{test id: why it failed}`` for the failing checks of every JUnit XML file in ``folder`` (the first
    message wins: it is what a student fixes first)."""
    messages: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.xml")):
        for key, (ok, why) in read_junit(path).items():
            if not ok and why:
                messages.setdefault(key, why)
    return messages


def read_reports(folder: Path) -> dict[str, bool]:
    """``{test id: passed}`` from every JUnit XML file in ``folder`` (see :func:`read_junit`)."""
    results: dict[str, bool] = {}
    for path in sorted(Path(folder).glob("*.xml")):
        for key, (ok, _) in read_junit(path).items():
            results[key] = results.get(key, True) and ok
    return results


def _block_text(path: Path, exercise: dict) -> str | None:
    """The student's text of this exercise's block, or None when the file or markers are gone."""
    if not path.is_file():
        return None
    text = path.read_text(errors="replace")
    if exercise["kind"] == "answer":
        return text
    return text if STUDENT_BEGIN in text else None


def checks_of(exercise: dict) -> list[str]:
    """The checks that decide an exercise here: the tests that call it by name (so a mistake in another
    exercise, used by a model built on both, does not mark this one failing), else every test that can reach
    it, else its notebook. Grading is stricter: it also runs the models, with the other exercises solved."""
    return (
        exercise.get("direct") or exercise.get("tests") or ([exercise["notebook"]] if exercise.get("notebook") else [])
    )


def status(exercise: dict, results: dict[str, bool], root: Path = ROOT) -> str:
    """'passing', 'failing', 'not started' or 'not run' for one exercise."""
    path = root / exercise["file"]
    text = _block_text(path, exercise)
    if text is None:
        return "failing"
    if exercise["kind"] == "code" and _stub_present(text, exercise["function"]):
        return "not started"
    if exercise["kind"] == "cell" and f"{exercise['name']} {STUB_TAG}" in text:
        return "not started"
    seen = [results[c] for c in checks_of(exercise) if c in results]
    if not seen:
        return "not run"
    return "passing" if all(seen) else "failing"


def first_failing(exercise: dict, results: dict[str, bool]) -> str | None:
    """The first check of this exercise that failed in the test run (a test id or a notebook), if any."""
    return next((c for c in checks_of(exercise) if results.get(c) is False), None)


def _stub_present(text: str, function: str) -> bool:
    return f'"{function} {STUB_TAG}' in text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Checklist of the exercises after a test run.")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="folder of JUnit XML reports")
    args = parser.parse_args(argv)
    if not EXERCISES.is_file():
        print("no tools/exercises.json: this is not a student edition (nothing to check off)")
        return 0
    by_function: dict[tuple[str, str], dict] = {}
    for e in json.loads(EXERCISES.read_text())["exercises"]:
        if e["kind"] == "answer":
            continue
        # a function with several blocks is one line, checked by the checks of all its blocks
        first = by_function.setdefault((e["file"], e["function"]), {**e, "tests": [], "direct": []})
        for key in ("tests", "direct"):
            first[key] += [t for t in e.get(key, []) if t not in first[key]]
    exercises = list(by_function.values())
    results = read_reports(args.reports)
    messages = failure_messages(args.reports)
    counts: dict[str, int] = {}
    print("\nExercise checklist")
    wn = max([len("exercise")] + [len(e["function"]) for e in exercises])
    wf = max([len("file")] + [len(e["file"]) for e in exercises])
    print(f"{'':4}{'exercise':<{wn}} {'file':<{wf}} status")
    for ex in exercises:
        st = status(ex, results)
        counts[st] = counts.get(st, 0) + 1
        mark = {"passing": "[x]", "failing": "[!]", "not started": "[ ]", "not run": "[?]"}[st]
        print(f"{mark} {ex['function']:<{wn}} {ex['file']:<{wf}} {st}")
        if st == "failing" and (check := first_failing(ex, results)):
            print(f"{'':4}first failing check: {check}")
            if check in messages:  # the check's own words: what differs, and the likely mistake
                print(f"{'':8}{messages[check].removeprefix('AssertionError: ')}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"\n{len(exercises)} exercises: {summary}")
    return 0 if counts.get("passing", 0) == len(exercises) else 1


if __name__ == "__main__":
    sys.exit(main())
