"""Marks from nbgrader into the gradebook, without nbgrader: what is kept, what is replaced, what is refused.
(The round trip with nbgrader itself is tests/grading/test_nbgrader.py, `make test-nbgrader`.)"""

from __future__ import annotations

import csv

import pytest

from instructor.exercises import Exercise
from instructor.nbgrader_marks import Mark, answer_column, comment_column, merge_marks, write_gradebook

EXERCISES = [Exercise("common/layers.py::affine", "common/layers.py", "affine", points=2.0)]
Q1, Q2 = "assignment1/Dropout.ipynb::q1", "assignment1/Dropout.ipynb::q2"
ANSWERS = {Q1: 1.0, Q2: 2.0}


def _rows(book):
    with open(book, newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def _graded(book, **points):
    reports = [
        {"student": s, "exercises": [{"id": EXERCISES[0].id, "points": p}], "answers": {}} for s, p in points.items()
    ]
    write_gradebook(reports, EXERCISES, ANSWERS, book)


def test_marks_replace_only_what_nbgrader_has_marked(tmp_path):
    book = tmp_path / "gradebook.csv"
    _graded(book, alice=2, carol=1)
    rows = _rows(book)
    rows["alice"][answer_column(Q2, 2)] = "1.5"  # typed by hand into the gradebook
    with open(book, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows["alice"]))
        writer.writeheader()
        writer.writerows(rows.values())
    marks = {
        "alice": {Q1: Mark(1.0, 1.0, "Good."), Q2: Mark(None, 2.0, "")},  # Q2 waits in nbgrader
        "dave": {Q1: Mark(0.0, 1.0, "No response."), Q2: Mark(2.0, 2.0, "")},
    }
    done = merge_marks(book, marks, EXERCISES, ANSWERS)
    rows = _rows(book)
    assert rows["alice"][answer_column(Q1, 1)] == "1" and rows["alice"][comment_column(Q1)] == "Good."
    assert rows["alice"][answer_column(Q2, 2)] == "1.5"  # not marked in nbgrader: the hand-typed mark stays
    assert rows["alice"]["total"] == "4.5"
    assert rows["dave"]["exercises total"] == "0" and rows["dave"]["total"] == "2"
    assert rows["carol"]["total"] == "1" and rows["carol"][answer_column(Q1, 1)] == ""
    assert done["code not graded (no exercise in the gradebook)"] == ["dave"]
    assert done["not in nbgrader"] == ["carol"]
    assert done["marks written"] == 3 and done["waiting for manual marking"] == 1
    # each comment column follows its answer's column
    header = list(rows["alice"])
    assert header.index(comment_column(Q1)) == header.index(answer_column(Q1, 1)) + 1
    # importing again changes nothing, and a later regrade (write_gradebook) keeps the marks
    before = book.read_text()
    merge_marks(book, marks, EXERCISES, ANSWERS)
    assert book.read_text() == before
    _graded(book, alice=0)
    assert _rows(book)["alice"][answer_column(Q1, 1)] == "1" and _rows(book)["alice"]["total"] == "2.5"


def test_points_that_differ_from_the_course_are_refused(tmp_path):
    book = tmp_path / "gradebook.csv"
    with pytest.raises(ValueError, match=r"(?s)export the course again.*q2: 3 points in nbgrader, 2 in the course"):
        merge_marks(book, {"alice": {Q2: Mark(1.0, 3.0, "")}}, EXERCISES, ANSWERS)
    assert not book.exists()
