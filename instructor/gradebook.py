"""Writing what grading found: the per-student table, the gradebook (merged, atomic) and the written answers."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import sys
from pathlib import Path

from instructor.exercises import Exercise
from instructor.markers import read_notebook


def render_table(report: dict) -> str:
    rows = [("exercise", "points", "max", "first failure")]
    for r in report["exercises"]:
        rows.append(
            (r["id"], f"{r['points']:g}", f"{r['max']:g}", r["first_failure"] if r["status"] != "passed" else "")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * (sum(widths) + 20))
    lines.append(f"{'total':<{widths[0]}}  {report['total']:>{widths[1]}g}  {report['max']:>{widths[2]}g}")
    answered = sum(v is not None for v in report["answers"].values())
    lines.append(f"written answers: {answered} of {len(report['answers'])} given (marked by hand: see answers/)")
    return "\n".join(lines)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_gradebook(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an existing gradebook by student (column -> cell), or {} when there is none or it cannot
    be read (then it is written afresh, with a warning)."""
    if not path.exists():
        return {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"warning: {path} cannot be read ({e}); writing it afresh", file=sys.stderr)
        return {}
    return {r["student"]: r for r in rows if r.get("student") and r["student"] != "(max)"}


#: The gradebook's column of review flags: constructs in a submission worth a look (they cost no points).
REVIEW_COLUMN = "review flags"


def _stale(column: str) -> bool:
    """A column of ours from an earlier layout of the course: an exercise's or a written answer's."""
    return column.startswith("common/") or re.search(r" \(/[0-9.]+\)$", column) is not None


def write_gradebook(reports: list[dict], exercises: list[Exercise], answers: dict[str, float], path: Path) -> None:
    """Write the gradebook: a row per student, a column per exercise, per written answer and the totals.

    An existing gradebook is merged, not replaced: the rows of students not in ``reports`` stay, and the marks
    typed into the answer columns are kept for every student, so regrading one submission or recomputing the
    totals after marking by hand (``--totals``) loses nothing. Totals add up the numbers in a row; an answer
    not yet marked counts nothing. Written atomically."""
    old = read_gradebook(path)
    answer_cols = [f"{aid} (/{pts:g})" for aid, pts in answers.items()]
    ex_cols = [ex.id for ex in exercises]
    ours = ["student", *ex_cols, "exercises total", *answer_cols, "answers total", "total", REVIEW_COLUMN]
    # columns an instructor added (comments, late days ...) stay: one named after a written answer ("... comment")
    # right after that answer's column, the others at the end
    added: list[str] = []
    for row in old.values():
        added += [c for c in row if c and c not in ours and c not in added and not _stale(c)]
    header = []
    for col in ours:
        header.append(col)
        if col in answer_cols:
            aid = col.rsplit(" (/", 1)[0]
            header += [c for c in added if c.startswith(aid + " ")]
    header += [c for c in added if c not in header]
    graded = {rep["student"]: rep for rep in reports}
    rows = []
    for student in sorted(set(old) | set(graded)):
        before = old.get(student, {})
        row = {c: before.get(c) or "" for c in added}
        if student in graded:
            pts = {r["id"]: r["points"] for r in graded[student]["exercises"]}
            row.update({c: f"{pts.get(c, 0):g}" for c in ex_cols})
            row[REVIEW_COLUMN] = graded[student].get("review", "")
        else:
            row.update({c: before.get(c) or "" for c in ex_cols})
            row[REVIEW_COLUMN] = before.get(REVIEW_COLUMN) or ""
        row.update({c: (before.get(c) or "").strip() for c in answer_cols})
        ex_total = sum(v for v in (_number(row[c]) for c in ex_cols) if v is not None)
        marks = [v for v in (_number(row[c]) for c in answer_cols) if v is not None]
        row.update(
            {
                "student": student,
                "exercises total": f"{ex_total:g}",
                "answers total": f"{sum(marks):g}" if marks else "",
                "total": f"{ex_total + sum(marks):g}",
            }
        )
        rows.append([row.get(c, "") for c in header])
    ex_max = sum(e.points for e in exercises)
    ans_max = sum(answers.values())
    maxima = {c: f"{e.points:g}" for c, e in zip(ex_cols, exercises)}
    maxima.update({c: f"{p:g}" for c, p in zip(answer_cols, answers.values())})
    maxima.update(
        {"student": "(max)", "exercises total": f"{ex_max:g}", "answers total": f"{ans_max:g}"}
        | {"total": f"{ex_max + ans_max:g}"}
    )
    rows.append([maxima.get(c, "") for c in header])
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    os.replace(tmp, path)


def read_reports(folder: Path) -> list[dict]:
    """Every per-student JSON report in ``folder`` (the gradebook and answers are built from all of them)."""
    reports = []
    for p in sorted(folder.glob("*.json")):
        try:
            rep = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            print(f"warning: skipping {p}: not a readable report ({e})", file=sys.stderr)
            continue
        if isinstance(rep, dict) and {"student", "exercises", "answers"} <= rep.keys():
            reports.append(rep)
    return reports


def _question_text(root: Path, answer_id: str) -> str:
    """The Markdown cell right before an answer cell: its question."""
    file, grade_id = answer_id.split("::")
    cells = read_notebook(root / file)["cells"]
    for i, cell in enumerate(cells):
        if (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id") == grade_id:
            prev = cells[i - 1] if i else None
            return "".join(prev["source"]) if prev and prev["cell_type"] == "markdown" else ""
    return ""


def write_answers(reports: list[dict], answers: dict[str, float], root: Path, folder: Path) -> None:
    """One Markdown and one HTML file per written question, every student's answer under it."""
    import mistune

    folder.mkdir(parents=True, exist_ok=True)
    for aid, pts in answers.items():
        question = _question_text(root, aid)
        md = [f"# {aid} ({pts:g} points)", "", question, ""]
        for rep in sorted(reports, key=lambda r: r["student"]):
            text = rep["answers"].get(aid)
            md += [f"## {rep['student']}", "", text if text else "*(no answer)*", ""]
        stem = aid.replace("/", "_").replace("::", "__").removesuffix(".ipynb")
        (folder / f"{stem}.md").write_text("\n".join(md))
        body = mistune.html("\n".join(md))
        (folder / f"{stem}.html").write_text(
            "<!doctype html><meta charset='utf-8'><title>" + html.escape(aid) + "</title>"
            "<script src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js' async></script>"
            "<style>body{max-width:50em;margin:2em auto;font-family:sans-serif}h2{border-top:1px solid #ccc;"
            "padding-top:1em}</style>\n" + body
        )
