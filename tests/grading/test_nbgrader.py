"""The course through nbgrader, end to end with nbgrader itself: export the course, generate the release of every
assignment, validate, release/fetch/submit/collect, autograde without executing notebooks, mark an answer in
nbgrader's gradebook and read the marks back into grades/gradebook.csv; and the collected submissions turned
into course folders for this project's grader.

Slow (nbgrader starts a kernel to validate): ``make test-nbgrader`` runs it (it installs nbgrader first)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if not os.environ.get("COURSE_NBGRADER_TEST"):
    pytest.skip("the nbgrader round trip is slow: `make test-nbgrader` runs it", allow_module_level=True)
pytest.importorskip("nbgrader", reason="nbgrader is not installed: `make test-nbgrader` installs it")

from nbgrader.api import Gradebook  # noqa: E402
from nbgrader.utils import get_username  # noqa: E402

from instructor import nbgrader_course, nbgrader_marks  # noqa: E402
from instructor.check_release import find_leaks  # noqa: E402
from instructor.exercises import answer_points, group, load_points  # noqa: E402
from instructor.markers import (  # noqa: E402
    ANSWER_STUB,
    BEGIN,
    STUDENT_BEGIN,
    STUDENT_END,
    all_blocks,
    fill_python,
    nbgrader_meta,
    notebook_work,
    parse_python,
    parse_python_tolerant,
    read_notebook,
    write_notebook,
)
from instructor.student import build as build_edition  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COURSE_ID = nbgrader_course.COURSE_ID
ASSIGNMENTS = nbgrader_course.assignments(ROOT)
STUDENTS = ("alice", "bob")  # handed in through the folder layout nbgrader collect writes


def nbgrader(*args: str, cwd: Path) -> str:
    """Run nbgrader's command line; its output (it fails the test when nbgrader does)."""
    env = dict(os.environ, COURSE_QUICK="1", MPLBACKEND="Agg")
    # nbgrader runs `alembic` from PATH when it creates a gradebook
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{out[-3000:]}"
    return out


def answer_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if (nbgrader_meta(c) or {}).get("grade") and c["cell_type"] == "markdown"]


def answer(path: Path, grade_ids: list[str], text: str) -> None:
    """Write ``text`` into the named answer cells of a notebook, as a student does in JupyterLab."""
    nb = read_notebook(path)
    for cell in answer_cells(nb):
        if cell["metadata"]["nbgrader"]["grade_id"] in grade_ids:
            cell["source"] = [text]
    write_notebook(nb, path)


def write_block(path: Path, file: str, bodies: dict[str, list[str]], extra: str = "") -> None:
    """Replace the bodies of blocks between the student markers of a library file (and append ``extra``)."""
    text = fill_python(path.read_text(), file, bodies, STUDENT_BEGIN, STUDENT_END, STUDENT_BEGIN, STUDENT_END)
    path.write_text(text + extra)


@pytest.fixture(scope="module")
def blocks():
    return all_blocks(ROOT)


@pytest.fixture(scope="module")
def course(tmp_path_factory, blocks):
    """The exported course after generate_assignment (every assignment), the hand-ins and autograde of the first
    assignment: alice answered one Dropout question and wrote dropout in her library, bob handed in the
    release untouched, and the machine's user went through release, fetch, submit and collect."""
    tmp = tmp_path_factory.mktemp("nbgrader")
    root = tmp / "course"
    subprocess.run(
        [sys.executable, "-m", "instructor.nbgrader_course", "export", "--out", str(root)], cwd=ROOT, check=True
    )
    for name in ASSIGNMENTS:
        nbgrader("generate_assignment", name, cwd=root)
    first = ASSIGNMENTS[0]
    release = root / "release" / first
    dropout = next(b for b in blocks if b.id == "common/layers.py::dropout_forward")
    for student in STUDENTS:
        dest = root / "submitted" / student / first
        shutil.copytree(release, dest)
        (dest / "timestamp.txt").write_text("2030-01-10 10:00:00.000000 UTC")
    alice = root / "submitted" / "alice" / first
    answer(alice / "Dropout.ipynb", ["q1_inverted_scaling"], "Without 1/p the test-time activations are too large.")
    write_block(
        alice / "common/layers.py",
        "common/layers.py",
        {dropout.name: [dropout.indent + "raise RuntimeError('alice wrote this')"]},
    )
    # the exchange, as on a JupyterHub: the instructor releases, a student fetches, answers, submits
    exchange, home = tmp / "exchange", tmp / "home"
    exchange.mkdir()
    home.mkdir()
    nbgrader("release_assignment", first, f"--Exchange.root={exchange}", cwd=root)
    nbgrader("fetch_assignment", first, f"--course={COURSE_ID}", f"--Exchange.root={exchange}", cwd=home)
    answer(home / first / "Perceptron.ipynb", ["q2_learning_rate"], "It only rescales the weights.")
    nbgrader("submit", first, f"--course={COURSE_ID}", f"--Exchange.root={exchange}", cwd=home)
    nbgrader("collect", first, f"--Exchange.root={exchange}", cwd=root)
    nbgrader("autograde", first, "--Execute.enabled=False", cwd=root)
    return root


def test_release_holds_no_solution_and_matches_the_course_edition(course, blocks, tmp_path):
    library = [b for b in blocks if b.kind == "code"]
    edition = tmp_path / "student"
    build_edition(ROOT, edition, quiet=True)
    for name in ASSIGNMENTS:
        release = course / "release" / name
        assert find_leaks(blocks, release) == []
        texts = [p.read_text() for p in (release / "common").rglob("*.py")]
        assert not any(BEGIN in t for t in texts)
        assert sum(t.count(STUDENT_BEGIN) for t in texts) == len(library)  # every exercise is there, stubbed
        # nbgrader's release and `make student` give the same notebooks, cell for cell (checksums included)
        for path in sorted((ROOT / name).glob("*.ipynb")):
            ours = read_notebook(edition / name / path.name)["cells"]
            theirs = read_notebook(release / path.name)["cells"]
            assert [(c["metadata"], "".join(c["source"])) for c in theirs] == [
                (c["metadata"], "".join(c["source"])) for c in ours
            ], path.name
            assert all("".join(c["source"]) == ANSWER_STUB for c in answer_cells(read_notebook(release / path.name)))


def test_validate_flags_unanswered_notebooks(course, tmp_path):
    notebook = "Perceptron.ipynb"
    release = course / "release" / ASSIGNMENTS[0]
    n_answers = len(answer_cells(read_notebook(release / notebook)))
    assert n_answers > 0
    out = nbgrader("validate", str(release / notebook), cwd=course)
    assert f"VALIDATION FAILED ON {n_answers} CELL(S)" in out and "You did not provide a response." in out
    # the course's own edition, unanswered, is flagged the same way
    edition = tmp_path / "student"
    build_edition(ROOT, edition, quiet=True)
    out = nbgrader("validate", str(edition / ASSIGNMENTS[0] / notebook), cwd=tmp_path)
    assert f"VALIDATION FAILED ON {n_answers} CELL(S)" in out
    # one answer left: one flagged; all answered: success
    mine = tmp_path / "mine"
    shutil.copytree(release, mine)
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in answer_cells(read_notebook(mine / notebook))]
    answer(mine / notebook, ids[:-1], "An answer.")
    assert "VALIDATION FAILED ON 1 CELL(S)" in nbgrader("validate", str(mine / notebook), cwd=tmp_path)
    answer(mine / notebook, ids, "An answer.")
    assert "Success!" in nbgrader("validate", str(mine / notebook), cwd=tmp_path)


def test_autograde_leaves_exactly_the_answered_cells_and_the_students_library(course, blocks):
    first = ASSIGNMENTS[0]
    answers = answer_points(blocks)
    user = get_username()
    answered = {
        "alice": {("Dropout", "q1_inverted_scaling")},
        "bob": set(),
        user: {("Perceptron", "q2_learning_rate")},
    }
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        for student, want in answered.items():
            grades = [(n.name, g) for n in gb.find_submission(first, student).notebooks for g in n.grades]
            assert _ids(first, grades) == {a for a in answers if a.startswith(first + "/")}  # every answer, no more
            assert {(nb, g.name) for nb, g in grades if g.needs_manual_grade} == want, student
            assert all(g.auto_score == 0 for nb, g in grades if (nb, g.name) not in want)
    # autograde kept alice's library (nbgrader would have put the stubs from source/ over it)
    mine = (course / "submitted/alice" / first / "common/layers.py").read_text()
    assert "alice wrote this" in mine
    assert (course / "autograded/alice" / first / "common/layers.py").read_text() == mine


def _ids(assignment: str, grades) -> set[str]:
    return {f"{assignment}/{nb}.ipynb::{g.name}" for nb, g in grades}


def test_marks_given_in_nbgrader_reach_the_gradebook(course, blocks, tmp_path):
    first = ASSIGNMENTS[0]
    points = load_points()
    exercises, answers = group(blocks, None, points), answer_points(blocks, points)
    # the course grader's gradebook: alice and carol graded (carol never used nbgrader); bob only in nbgrader
    reports = [
        {"student": s, "exercises": [{"id": e.id, "points": e.points} for e in exercises], "answers": {}}
        for s in ("alice", "carol")
    ]
    book = tmp_path / "grades" / "gradebook.csv"
    book.parent.mkdir()
    nbgrader_marks.write_gradebook(reports, exercises, answers, book)
    # the instructor marks alice's answer in formgrader (which writes these fields of nbgrader's gradebook)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        grade = gb.find_grade("q1_inverted_scaling", "Dropout", first, "alice")
        grade.manual_score = 0.5
        comment = gb.find_comment("q1_inverted_scaling", "Dropout", first, "alice")
        comment.manual_comment = "Right effect, but why does the scale matter?"
        gb.db.commit()
    done = subprocess.run(
        [sys.executable, "-m", "instructor.nbgrader_marks", "--course", str(course), "--out", str(book.parent)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "code not graded (no exercise in the gradebook): bob" in done.stdout
    assert "not in nbgrader: carol" in done.stdout
    with open(book, newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert {"alice", "bob", "carol", get_username(), "(max)"} <= set(rows)
    q1 = nbgrader_marks.answer_column(f"{first}/Dropout.ipynb::q1_inverted_scaling", 1)
    q2 = nbgrader_marks.answer_column(f"{first}/Dropout.ipynb::q2_dropout_regulariser", 1)
    alice = rows["alice"]
    assert alice[q1] == "0.5" and alice[f"{first}/Dropout.ipynb::q1_inverted_scaling comment"].startswith("Right")
    assert alice[q2] == "0"  # left as released: nbgrader's zero
    ex_max = sum(e.points for e in exercises)
    assert float(alice["exercises total"]) == ex_max and float(alice["total"]) == ex_max + 0.5
    assert rows["bob"]["exercises total"] == "0" and rows["bob"][q1] == "0"  # listed, marks only
    assert rows["carol"][q1] == "" and float(rows["carol"]["total"]) == ex_max  # kept as it was
    assert rows[get_username()][nbgrader_marks.answer_column(f"{first}/Perceptron.ipynb::q2_learning_rate", 1)] == ""


def test_collected_submissions_become_course_folders_for_the_grader(course, blocks, tmp_path):
    """Each library exercise comes from the assignment whose notebooks first use it, not from a copy changed
    later; the student's helpers come along from the copy they were written in."""
    homes = nbgrader_course.home_assignments(ROOT, blocks)
    first = ASSIGNMENTS[0]
    # two exercises of one library file, first used in different assignments
    early, late = next(
        (a, b)
        for a in blocks
        for b in blocks
        if a.file == b.file and a.id in homes and b.id in homes and homes[a.id] < homes[b.id]
    )
    submitted = course / "submitted"
    for name in (homes[early.id], homes[late.id]):
        if not (submitted / "alice" / name).exists():
            shutil.copytree(course / "release" / name, submitted / "alice" / name)
    at_home, later = (submitted / "alice" / homes[b.id] / early.file for b in (early, late))
    helper = "\n\ndef _alice_helper():\n    return 1\n"
    write_block(at_home, early.file, {early.name: [early.indent + "return _alice_helper()"]}, helper)
    changed = {
        early.name: [early.indent + "return 'changed later'"],
        late.name: [late.indent + "return 2"],
    }
    write_block(later, early.file, changed)
    inbox = tmp_path / "inbox"
    command = ["instructor.nbgrader_course", "submissions", "--course", str(course), "--out", str(inbox)]
    subprocess.run([sys.executable, "-m", *command], cwd=ROOT, check=True, capture_output=True)
    assert {p.name for p in inbox.iterdir()} == {"alice", "bob", get_username()}
    merged = (inbox / "alice" / early.file).read_text()
    parse_python(merged, early.file, STUDENT_BEGIN, STUDENT_END)  # still a valid module
    found = parse_python_tolerant(merged, early.file, STUDENT_BEGIN, STUDENT_END)
    assert found[early.name] == [early.indent + "return _alice_helper()"]
    assert found[late.name] == [late.indent + "return 2"]
    assert "def _alice_helper():" in merged
    work = notebook_work(read_notebook(inbox / "alice" / first / "Dropout.ipynb"), "Dropout.ipynb")
    assert work["q1_inverted_scaling"] == ["Without 1/p the test-time activations are too large."]
    assert sorted(p.name for p in (inbox / "bob").iterdir()) == sorted([first, "common"])
