"""Marks of the written answers from nbgrader's gradebook into ``grades/gradebook.csv``:
``python -m instructor.nbgrader_marks --course DIR`` (``make nbgrader-marks COURSE=DIR``).

The course directory is the one ``make nbgrader-course`` exported, where nbgrader (formgrader) keeps its
gradebook database. For every student there, each written answer's mark goes into its column of the
gradebook, beside the code exercises that ``make grade`` put there, with the marker's comment in a column
after it; students are matched by id (nbgrader's student id is the name ``make nbgrader-submissions`` gives
their folder, so the grader's rows carry it). Then the totals are recomputed.

- a mark given in formgrader, or nbgrader's zero for an answer left as it was released, is written; an
  answer that still waits for manual marking keeps what the gradebook has (empty, or a mark typed there);
- a student nbgrader has but the gradebook has not (code not graded yet) gets a row with the marks only; a
  student the gradebook has but nbgrader has not keeps the row. Both lists are printed, nobody is dropped;
- an nbgrader cell whose points differ from the course's (``instructor/points.toml``) is an error: export
  the course again and regenerate the assignment.

``make grade`` keeps the marks and the comment columns when it rewrites the gradebook; nbgrader's database is
where marks and comments live, so running this again brings any later marking in.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from instructor.exercises import answer_points, group, load_points
from instructor.markers import all_blocks

try:  # the gradebook's writer (it may move out of grade.py)
    from instructor.gradebook import read_gradebook, write_gradebook
except ImportError:  # pragma: no cover
    from instructor.grade import read_gradebook, write_gradebook

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "nbgrader_config.py"
NOT_INSTALLED = (
    "nbgrader is not installed in this environment: `make nbgrader-marks` installs it "
    "(or: .venv/bin/pip install -e '.[nbgrader]')"
)


@dataclass
class Mark:
    """One written answer of one student, as nbgrader has it."""

    score: float | None  # None: not marked yet
    max_score: float
    comment: str


def answer_column(answer_id: str, points: float) -> str:
    """The gradebook's column of a written answer (as ``write_gradebook`` names it)."""
    return f"{answer_id} (/{points:g})"


def comment_column(answer_id: str) -> str:
    return f"{answer_id} comment"


def course_database(course: Path) -> tuple[str, str]:
    """``(db_url, course_id)`` of an nbgrader course directory, as nbgrader itself reads its configuration."""
    try:
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config.loader import PyFileConfigLoader
    except ImportError as err:
        raise RuntimeError(NOT_INSTALLED) from err
    course = Path(course).resolve()
    if not (course / CONFIG).is_file():
        raise ValueError(f"{course} holds no {CONFIG}: give the course directory `make nbgrader-course` wrote")
    config = PyFileConfigLoader(CONFIG, path=str(course)).load_config()
    coursedir = CourseDirectory(config=config)
    coursedir.root = str(course)
    db_url = coursedir.db_url
    if db_url.startswith("sqlite:///") and not Path(db_url.removeprefix("sqlite:///")).is_file():
        raise ValueError(
            f"no nbgrader gradebook at {db_url.removeprefix('sqlite:///')}: generate and autograde an assignment "
            f"there first (nbgrader generate_assignment ..., nbgrader autograde ...)"
        )
    return db_url, coursedir.course_id


def read_marks(db_url: str, course_id: str) -> tuple[dict[str, dict[str, Mark]], dict[str, list[str]]]:
    """``({student: {answer id: Mark}}, {student: assignments not submitted})`` from nbgrader's gradebook. An
    answer id is ``<assignment>/<notebook>.ipynb::<grade_id>``, the course's own."""
    try:
        from nbgrader.api import Gradebook, MissingEntry
    except ImportError as err:
        raise RuntimeError(NOT_INSTALLED) from err
    marks: dict[str, dict[str, Mark]] = {}
    unsubmitted: dict[str, list[str]] = {}
    with Gradebook(db_url, course_id) as gb:
        assignments = [a.name for a in gb.assignments]
        for student in gb.students:
            marks[student.id] = {}
            for name in assignments:
                try:
                    submission = gb.find_submission(name, student.id)
                except MissingEntry:
                    unsubmitted.setdefault(student.id, []).append(name)
                    continue
                for notebook in submission.notebooks:
                    comments = {c.name: c for c in notebook.comments}
                    for grade in notebook.grades:
                        if grade.cell_type != "markdown":
                            continue  # code is graded by the course's grader, not here
                        if grade.manual_score is not None:
                            score = grade.manual_score + (grade.extra_credit or 0)
                        elif grade.auto_score is not None and not grade.needs_manual_grade:
                            score = grade.auto_score + (grade.extra_credit or 0)
                        else:
                            score = None
                        c = comments.get(grade.name)
                        text = "" if c is None else (c.manual_comment or c.auto_comment or "")
                        aid = f"{name}/{notebook.name}.ipynb::{grade.name}"
                        marks[student.id][aid] = Mark(score, float(grade.max_score), text.strip())
    return marks, unsubmitted


def merge_marks(book: Path, marks: dict[str, dict[str, Mark]], exercises, answers: dict[str, float]) -> dict:
    """Put ``marks`` into the gradebook at ``book`` (created when missing), recompute its totals, add a comment
    column after each answer's; returns what was done (see the module docstring)."""
    unknown = sorted({aid for per in marks.values() for aid in per if aid not in answers})
    wrong = sorted(
        f"{aid}: {m.max_score:g} points in nbgrader, {answers[aid]:g} in the course"
        for per in marks.values()
        for aid, m in per.items()
        if aid in answers and m.max_score != answers[aid]
    )
    if wrong:
        raise ValueError(
            "nbgrader's points differ from instructor/points.toml (export the course again and regenerate "
            "the assignment):\n  " + "\n  ".join(dict.fromkeys(wrong))
        )
    rows = read_gradebook(book)
    in_book = set(rows)
    # a row with no exercise filled in is one an earlier import added: that student's code is not graded yet
    code_graded = {s for s, row in rows.items() if any((row.get(e.id) or "").strip() for e in exercises)}
    comments: dict[str, dict[str, str]] = {
        s: {aid: row.get(comment_column(aid)) or "" for aid in answers} for s, row in rows.items()
    }
    written = waiting = 0
    for student, per in marks.items():
        row = rows.setdefault(student, {"student": student})
        for aid, mark in per.items():
            if aid not in answers:
                continue
            if mark.score is None:
                waiting += 1
            else:
                row[answer_column(aid, answers[aid])] = f"{mark.score:g}"
                written += 1
            if mark.comment:
                comments.setdefault(student, {})[aid] = mark.comment
    # write_gradebook merges with the file it rewrites: give it the rows with the marks, then add the comments
    tmp = book.with_name(f".{book.name}.nbgrader")
    book.parent.mkdir(parents=True, exist_ok=True)
    header = ["student", *dict.fromkeys(k for row in rows.values() for k in row if k != "student")]
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, header, restval="")
        writer.writeheader()
        writer.writerows(rows.values())
    write_gradebook([], exercises, answers, tmp)
    with open(tmp, newline="") as f:
        table = list(csv.reader(f))
    out_header, columns = [], []
    ans_col = {answer_column(aid, pts): aid for aid, pts in answers.items()}
    stale = {comment_column(aid) for aid in answers}  # kept by write_gradebook; written afresh below
    for i, name in enumerate(table[0]):
        if name in stale:
            continue
        out_header.append(name)
        columns.append((i, None))
        if name in ans_col:
            out_header.append(comment_column(ans_col[name]))
            columns.append((None, ans_col[name]))
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(out_header)
        for line in table[1:]:
            student = line[0]
            writer.writerow(
                [line[i] if i is not None else comments.get(student, {}).get(aid, "") for i, aid in columns]
            )
    os.replace(tmp, book)
    return {
        "students": sorted(marks),
        "marks written": written,
        "waiting for manual marking": waiting,
        "code not graded (no exercise in the gradebook)": sorted(set(marks) - code_graded),
        "not in nbgrader": sorted(in_book - set(marks)),
        "cells the course does not know": unknown,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", type=Path, required=True, help="the nbgrader course directory")
    parser.add_argument("--out", type=Path, default=ROOT / "grades", help="where gradebook.csv is (default grades/)")
    args = parser.parse_args(argv)
    try:
        db_url, course_id = course_database(args.course)
        marks, unsubmitted = read_marks(db_url, course_id)
        blocks = all_blocks(ROOT)
        points = load_points()
        done = merge_marks(
            args.out / "gradebook.csv", marks, group(blocks, None, points), answer_points(blocks, points)
        )
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))
    print(
        f"{args.out / 'gradebook.csv'}: {done['marks written']} marks of written answers from nbgrader for "
        f"{len(done['students'])} students; still waiting for marking: {done['waiting for manual marking']}"
    )
    for what in ("code not graded (no exercise in the gradebook)", "not in nbgrader", "cells the course does not know"):
        if done[what]:
            print(f"{what}: {', '.join(done[what])}")
    for student, names in sorted(unsubmitted.items()):
        print(f"{student}: nothing submitted for {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
