"""Grading a class on Dask with the real grader, end to end: a local cluster of two single-thread workers grades
the untouched student edition (nothing started: zero) and a correct submission (full marks), writes the reports
with where they were graded and the gradebook; a second run skips both. Minutes of CPU: marked slow_grading."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from instructor import grade
from instructor.cluster import grade_class
from instructor.student import build
from instructor.workspace import copy_instructor_tree
from tests.grading.test_grading import solved_submission

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow_grading


def test_a_class_of_two_is_graded_on_a_local_cluster(tmp_path):
    edition = tmp_path / "edition"
    build(ROOT, edition, quiet=True)
    inbox = tmp_path / "inbox"
    solved_submission(edition, inbox / "alice")
    shutil.copytree(edition, inbox / "bob")
    out = tmp_path / "grades"
    grader = grade.Grader(ROOT, workers=1, verbose=False)
    subs = sorted(inbox.iterdir())
    # The grading key hashes a snapshot of the tree, which nothing edits while the test runs (the working tree
    # may change under it, and the workers' check would then rightly stop the run: test_cluster.py covers it).
    snapshot = copy_instructor_tree(ROOT, tmp_path / "tree")
    kw = dict(n_workers=2, grader=grader, root=snapshot, check_machine=False, progress=False)

    reports = grade_class(subs, out, **kw)
    alice, bob = reports
    assert alice["student"] == "alice" and alice["max"] > 0 and alice["total"] == alice["max"]
    assert bob["total"] == 0 and {e["status"] for e in bob["exercises"]} == {"not started"}
    for rep in reports:
        on_disk = json.loads((out / f"{rep['student']}.json").read_text())
        assert on_disk["graded_on"]["worker"].startswith("tcp://127.0.0.1:")
        assert on_disk["graded_on"]["seconds"] > 0 and len(on_disk["grading_key"]) == 64
    with open(out / "gradebook.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert float(rows["alice"]["exercises total"]) == alice["max"] and rows["bob"]["exercises total"] == "0"

    start = time.perf_counter()
    again = grade_class(subs, out, **kw)
    assert time.perf_counter() - start < 30
    assert [r["graded_on"] for r in again] == [r["graded_on"] for r in reports]  # read back, not graded again
