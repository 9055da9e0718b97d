"""The grader end to end: the solved course grades full marks, the untouched student edition zero, realistic
wrong implementations lose exactly their own exercise, correct alternatives written differently get full
marks, and broken submissions (an endless loop, a syntax error, a deleted file, a tampered test) are graded
correctly. Each grading runs the real checks in subprocesses, so these tests take a few minutes."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from instructor import grade
from instructor.markers import (
    STUB_TAG,
    STUDENT_BEGIN,
    STUDENT_END,
    all_blocks,
    fill_notebook,
    fill_python,
    read_notebook,
    write_notebook,
)
from instructor.student import build
from tests.grading.alternatives import ALTERNATIVES, HELPERS
from tests.grading.wrong import WRONG

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grader():
    return grade.Grader(ROOT, workers=1, verbose=False)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    build(ROOT, out, quiet=True)
    return out


def solved_submission(
    edition: Path, into: Path, replace: dict[str, str] | None = None, helpers: dict[str, str] | None = None
) -> Path:
    """A copy of the student edition with every exercise written as the reference does, except the blocks in
    ``replace`` (block id -> code, dedented), written as given there, and ``helpers`` (file -> code) appended
    to their files. Answers are filled in too."""
    replace = replace or {}
    blocks = all_blocks(ROOT)
    bodies: dict[str, dict[str, list[str]]] = {}
    for b in blocks:
        body = b.body
        if b.id in replace:
            body = [b.indent + line if line else line for line in textwrap.dedent(replace[b.id]).splitlines()]
        bodies.setdefault(b.file, {})[b.name] = body
    unknown = set(replace) - {b.id for b in blocks}
    assert not unknown, f"no such blocks: {unknown}"
    shutil.copytree(edition, into)
    for file, file_bodies in bodies.items():
        path = into / file
        if file.endswith(".ipynb"):
            nb = fill_notebook(read_notebook(path), file, file_bodies, new_begin=STUDENT_BEGIN, new_end=STUDENT_END)
            write_notebook(nb, path)
        else:
            text = fill_python(path.read_text(), file, file_bodies, new_begin=STUDENT_BEGIN, new_end=STUDENT_END)
            path.write_text(text + (helpers or {}).get(file, ""))
    return into


def statuses(report: dict) -> dict[str, str]:
    return {r["id"]: r["status"] for r in report["exercises"]}


@pytest.mark.slow_grading
def test_the_solved_course_grades_full_marks(grader):
    report = grader.grade(ROOT)
    failed = {r["id"]: r["first_failure"] for r in report["exercises"] if r["status"] != "passed"}
    assert not failed
    assert report["total"] == report["max"] > 0
    assert all(text for text in report["answers"].values())


@pytest.mark.slow_grading
def test_the_untouched_edition_grades_zero(grader, edition):
    report = grader.grade(edition)
    assert set(statuses(report).values()) == {"not started"}
    assert report["total"] == 0
    assert not any(report["answers"].values())


def test_alternatives_cover_every_exercise_family():
    """tests/grading/alternatives.py writes at least one block of every graded exercise differently."""
    # only the list of exercises is read: no sandbox needed (this runs with the unit tests, before `make sandbox`)
    exercises = grade.Grader(ROOT, workers=1, verbose=False, sandbox=False).exercises
    uncovered = [ex.id for ex in exercises if not any(b.id in ALTERNATIVES for b in ex.blocks)]
    assert not uncovered, f"exercises without a correct alternative in tests/grading/alternatives.py: {uncovered}"


@pytest.mark.slow_grading
def test_alternative_correct_implementations_get_full_marks(grader, edition, tmp_path):
    sub = solved_submission(edition, tmp_path / "alternatives", ALTERNATIVES, HELPERS)
    report = grader.grade(sub)
    failed = {r["id"]: r["first_failure"] for r in report["exercises"] if r["status"] != "passed"}
    assert not failed
    assert report["total"] == report["max"] > 0


@pytest.mark.slow_grading
def test_each_wrong_or_broken_piece_costs_exactly_its_exercise(grader, edition, tmp_path):
    replace = {block: code for block, (code, _) in WRONG.items()}
    # an endless loop and a syntax error, each in one exercise
    replace["common/layers.py::leaky_relu_forward"] = "while True:\n    pass\n"
    replace["common/layers.py::tanh_forward"] = "out = np.tanh(x\ncache = out\n"
    # an optional part left unstarted (the closed-form batch norm backward pass) costs only itself
    replace["common/layers.py::batchnorm_backward_alt"] = (
        f'raise NotImplementedError("batchnorm_backward_alt {STUB_TAG}")\n'
    )
    sub = solved_submission(edition, tmp_path / "broken", replace)
    # a deleted file, a tampered test and a tampered Makefile change only what they touch
    (sub / "common" / "classifiers" / "perceptron.py").unlink()
    (sub / "tests" / "test_layers.py").write_text("def test_everything():\n    assert True\n")
    (sub / "Makefile").write_text("all:\n\ttrue\n")
    # a helper function and an import the student added to a file are kept
    layers = sub / "common" / "layers.py"
    layers.write_text(layers.read_text() + "\n\ndef _student_square(a):\n    return a * a\n")
    report = grader.grade(sub)
    lost = {r["id"] for r in report["exercises"] if r["status"] != "passed"}
    expected = {exercise for _, exercise in WRONG.values()} | {
        "common/layers.py::leaky_relu",
        "common/layers.py::tanh",
        "common/layers.py::batchnorm_backward_alt",
        "common/classifiers/perceptron.py::Perceptron.decision_function",
        "common/classifiers/perceptron.py::Perceptron.forward",
        "common/classifiers/perceptron.py::Perceptron.update",
    }
    assert lost == expected
    by_id = {r["id"]: r for r in report["exercises"]}
    assert "timed out" in by_id["common/layers.py::leaky_relu"]["first_failure"]
    assert "syntax error" in by_id["common/layers.py::tanh"]["first_failure"]
    assert by_id["common/layers.py::batchnorm_backward_alt"]["status"] == "not started"
    assert by_id["common/classifiers/perceptron.py::Perceptron.update"]["status"] == "missing"
    assert report["total"] == report["max"] - sum(by_id[e]["max"] for e in expected)


@pytest.mark.slow_grading
def test_reports_gradebook_and_answers_are_written(grader, edition, tmp_path):
    reports = [grader.grade(edition)]
    reports[0]["student"] = "untouched"
    grade.write_gradebook(reports, grader.exercises, grader.answers, tmp_path / "gradebook.csv")
    grade.write_answers(reports, grader.answers, ROOT, tmp_path / "answers")
    rows = (tmp_path / "gradebook.csv").read_text().splitlines()
    assert rows[0].startswith("student,") and rows[1].startswith("untouched,")
    assert len(rows[0].split(",")) == 1 + len(grader.exercises) + 1 + len(grader.answers) + 2 + 1
    assert rows[0].endswith(",review flags")
    answer_files = sorted((tmp_path / "answers").glob("*.md"))
    assert len(answer_files) == len(grader.answers)
    assert "(no answer)" in answer_files[0].read_text()
    table = grade.render_table(reports[0])
    assert "total" in table and json.dumps(reports[0])


def test_gradebook_merges_rows_and_keeps_hand_marks(tmp_path):
    """Regrading one student keeps the others' rows and every mark typed into the answer columns, and the
    totals add the marks; an unreadable gradebook is written afresh."""
    exercises = [
        grade.Exercise(id="a.py::f", file="a.py", family="f", points=2),
        grade.Exercise(id="a.py::g", file="a.py", family="g", points=1),
    ]
    answers = {"nb.ipynb::q1": 1.0, "nb.ipynb::q2": 2.0}

    def report(student, f, g):
        return {"student": student, "exercises": [{"id": "a.py::f", "points": f}, {"id": "a.py::g", "points": g}]}

    book = tmp_path / "gradebook.csv"
    grade.write_gradebook([report("ann", 2, 0), report("ben", 0, 1)], exercises, answers, book)
    rows = {r["student"]: r for r in grade.read_gradebook(book).values()}
    assert rows["ann"]["exercises total"] == "2" and rows["ann"]["total"] == "2" and rows["ann"]["answers total"] == ""
    # the instructor marks ann's answers by hand, then ben is regraded
    text = book.read_text().replace("ann,2,0,2,,,,2", "ann,2,0,2,1,1.5,,2")
    assert text != book.read_text()
    book.write_text(text)
    grade.write_gradebook([report("ben", 2, 1)], exercises, answers, book)
    rows = grade.read_gradebook(book)
    assert rows["ann"]["nb.ipynb::q1 (/1)"] == "1" and rows["ann"]["answers total"] == "2.5"
    assert rows["ann"]["total"] == "4.5"
    assert rows["ben"]["exercises total"] == "3" and rows["ben"]["total"] == "3"
    assert book.read_text().splitlines()[-1] == "(max),2,1,3,1,2,3,6,"
    # a column the instructor added (a comment beside an answer, late days) survives a regrade, in its place
    text = book.read_text().splitlines()
    text[0] = text[0].replace("nb.ipynb::q1 (/1),", "nb.ipynb::q1 (/1),nb.ipynb::q1 comment,") + ",late days"
    text = [text[0]] + [line.replace("ann,2,0,2,1,", "ann,2,0,2,1,well argued,") + ",2" for line in text[1:]]
    book.write_text("\n".join(text) + "\n")
    grade.write_gradebook([report("ben", 2, 1)], exercises, answers, book)
    rows = grade.read_gradebook(book)
    assert rows["ann"]["nb.ipynb::q1 comment"] == "well argued" and rows["ann"]["late days"] == "2"
    header = book.read_text().splitlines()[0].split(",")
    assert header.index("nb.ipynb::q1 comment") == header.index("nb.ipynb::q1 (/1)") + 1
    assert header[-1] == "late days" and rows["ann"]["total"] == "4.5"
    book.write_bytes(b"\xff\xfe\x00garbage")
    grade.write_gradebook([report("cat", 0, 0)], exercises, answers, book)
    assert set(grade.read_gradebook(book)) == {"cat"}


def test_the_edition_leaves_out_what_only_instructors_see(edition):
    for path in ("instructor", "tests/hidden", "tests/grading", "INSTRUCTORS.md", "bench/RESULTS.md", ".ci"):
        assert not (edition / path).exists(), f"{path} reached the student edition"
    assert (ROOT / "tests" / "hidden").is_dir() and (edition / "tools" / "exercises.json").is_file()
    assert (edition / "tests" / "test_layers.py").is_file()
    assert "{{EXERCISES}}" not in (edition / "README.md").read_text()
