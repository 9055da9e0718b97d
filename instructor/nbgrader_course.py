"""The course as an nbgrader course (JupyterHub, formgrader), and the way back to this project's grader.

``python -m instructor.nbgrader_course export --out DIR`` (``make nbgrader-course OUT=DIR``) writes an nbgrader
course directory:

- ``DIR/nbgrader_config.py``: this course's answer placeholder and code stub as nbgrader's, no notebook ever
  executed by nbgrader (the code is graded by ``make grade``), and autograde told never to overwrite the
  student's library with the copy in ``source/``;
- ``DIR/source/<assignment>/``: the assignment's notebooks as they are in this tree (``nbgrader
  generate_assignment`` clears the answers, as ``make student`` does) and, as supporting files, the student
  edition's library ``common/``: stubs, never solutions.

Anything else in ``DIR`` (``gradebook.db``, ``release/``, ``submitted/``, ...) is left alone, so exporting
again after an edit only refreshes ``source/`` and the configuration.

``python -m instructor.nbgrader_course submissions --course DIR --out INBOX`` (``make nbgrader-submissions``)
turns what nbgrader collected (``DIR/submitted/<student>/<assignment>/``) into one course folder per student,
``INBOX/<student>/``, which ``make grade SUBMISSIONS=INBOX`` grades: the notebooks of every assignment, and the
library with each exercise taken from the assignment whose notebooks first use it (each assignment carries a
whole copy of ``common/``; a student's later copies do not change an exercise already handed in), and from the
latest copy when no notebook uses it or that assignment's copy is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from instructor.exercises import answer_points
from instructor.markers import (
    ANSWER_STUB,
    BEGIN,
    END,
    STUB_TAG,
    STUDENT_BEGIN,
    STUDENT_END,
    Block,
    all_blocks,
    fill_python_tolerant,
    nbgrader_meta,
    notebook_files,
    parse_python_tolerant,
    read_notebook,
    write_notebook,
)
from instructor.reach import ReachMap
from instructor.student import build as build_edition

try:  # the grader's reader of a student's added imports and helpers (it may move out of grade.py)
    from instructor.submission import extras
except ImportError:  # pragma: no cover
    from instructor.grade import extras

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "nbgrader_config.py"
COURSE_ID = "dl-course"
LIBRARY = "common"
#: What nbgrader leaves out when it copies an assignment (its defaults, then what the course writes next to a
#: notebook: caches, datasets, a compiled extension).
IGNORE = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".cache", "datasets", "build", "*.so"]
#: nbgrader's stub for a notebook code exercise: the student markers this project's grader reads the work from.
CODE_STUB = "\n".join(
    [STUDENT_BEGIN, f'raise NotImplementedError("this cell {STUB_TAG}: between the two marker lines")', STUDENT_END]
)


def assignments(root: Path) -> list[str]:
    """The assignment folders of the course (those holding notebooks), in order."""
    return sorted({p.parent.name for p in notebook_files(root)})


def config_text(course_id: str, library: dict[str, list[str]]) -> str:
    """``nbgrader_config.py`` of the exported course; ``library``: assignment -> its library files."""
    return f'''"""nbgrader's configuration of the course, written by `make nbgrader-course`
(instructor/nbgrader_course.py). Export again rather than editing it; see INSTRUCTORS.md, "Written answers
through nbgrader"."""

c = get_config()  # noqa: F821 (nbgrader's config loader defines it)

c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.ignore = {json.dumps(IGNORE)}

# The course's own placeholders: a written answer reads as in `make student`'s edition, and a notebook code
# exercise keeps the marker lines this project's grader reads the student's code from.
c.ClearSolutions.text_stub = {ANSWER_STUB!r}
c.ClearSolutions.code_stub = {{"python": {json.dumps(CODE_STUB)}}}
c.ClearSolutions.begin_solution_delimeter = {BEGIN!r}
c.ClearSolutions.end_solution_delimeter = {END!r}

# Code is graded by this project's grader (`make nbgrader-submissions`, then `make grade`), never by nbgrader
# running notebooks: nbgrader marks the written answers only.
c.Execute.enabled = False

# The library in source/ is the student edition's stubs: autograde must keep each student's own copy.
c.Autograde.exclude_overwriting = {json.dumps(library, indent=4)}
'''


def export(root: Path = ROOT, out: Path | None = None, course_id: str = COURSE_ID, quiet: bool = False) -> dict:
    """Write the nbgrader course to ``out`` (see the module docstring); returns a summary."""
    root, out = Path(root).resolve(), Path(out).resolve()
    if out == root or (root in out.parents and out.relative_to(root).parts[0] != "dist"):
        raise ValueError(
            f"refusing to write the nbgrader course to {out}: use a folder under {root / 'dist'} or outside"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG).is_file():
        raise ValueError(f"{out} is not empty and holds no {CONFIG}: give an empty folder or an exported course")
    points = answer_points(all_blocks(root))
    names = assignments(root)
    library: dict[str, list[str]] = {}
    counts = {"notebooks": 0, "answers": 0}
    with tempfile.TemporaryDirectory(prefix="nbgrader-export-") as tmp:
        edition = Path(tmp) / "student"
        build_edition(root, edition, quiet=True)
        stubs = edition / LIBRARY
        leaked = [p for p in stubs.rglob("*.py") if BEGIN in p.read_text()]
        if leaked:  # the edition never holds a solution marker; refuse rather than ship one
            raise RuntimeError(f"the student edition's library holds solution markers: {leaked[0]}")
        for name in names:
            dest = out / "source" / name
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for path in sorted((root / name).glob("*.ipynb")):
                nb = read_notebook(path)
                for cell in nb["cells"]:
                    meta = nbgrader_meta(cell) or {}
                    aid = f"{name}/{path.name}::{meta.get('grade_id')}"
                    if aid in points:  # nbgrader's points are the course's (instructor/points.toml)
                        meta["points"] = int(points[aid]) if points[aid].is_integer() else points[aid]
                        counts["answers"] += 1
                write_notebook(nb, dest / path.name)
                counts["notebooks"] += 1
            shutil.copytree(stubs, dest / LIBRARY, ignore=shutil.ignore_patterns(*IGNORE))
            library[name] = sorted(p.relative_to(dest).as_posix() for p in (dest / LIBRARY).rglob("*") if p.is_file())
    (out / CONFIG).write_text(config_text(course_id, library))
    summary = {"out": str(out), "assignments": names, **counts, "library_files": len(library[names[0]])}
    if not quiet:
        print(
            f"nbgrader course: {out} ({', '.join(names)}: {counts['notebooks']} notebooks, {counts['answers']} "
            f"written answers, {summary['library_files']} library files each as stubs)\n"
            f"next, in {out}: nbgrader generate_assignment {names[0]}  (see INSTRUCTORS.md)"
        )
    return summary


# ---------------------------------------------------------------------------------------------------
# Submissions collected by nbgrader -> course folders for the grader
# ---------------------------------------------------------------------------------------------------


def home_assignments(root: Path, blocks: list[Block]) -> dict[str, str]:
    """``{block id: assignment}`` for the library blocks a notebook uses: the assignment of the first one."""
    reach = ReachMap.build(root, blocks)
    homes = {}
    for b in blocks:
        notebook = reach.located.get(b.id, ("", ""))[0]
        if b.kind == "code" and notebook:
            homes[b.id] = notebook.split("/")[0]
    return homes


def merge_library_file(
    file: str, blocks: list[Block], copies: dict[str, str], homes: dict[str, str], instructor_text: str
) -> str:
    """One library file of a student from their copies in several assignments (``copies``: assignment -> text,
    in course order): the latest copy, with each block whose home assignment's copy holds it taken from there,
    plus the imports and helpers those copies added that the latest one lacks."""
    order = list(copies)
    base = order[-1]
    bodies, used = {}, set()
    for b in blocks:
        home = homes.get(b.id)
        if home in copies and home != base:
            found = parse_python_tolerant(copies[home], file, STUDENT_BEGIN, STUDENT_END)
            if b.name in found:
                bodies[b.name] = found[b.name]
                used.add(home)
    text = fill_python_tolerant(copies[base], bodies, STUDENT_BEGIN, STUDENT_END)
    have_imports, have_defs = extras(text, instructor_text)
    added = []
    for a in [a for a in order if a in used]:
        imports, defs = extras(copies[a], instructor_text)
        new = [i for i in imports if i not in have_imports] + [d for d in defs if d not in have_defs]
        if new:
            added.append(f"# --- added by the student in {a} ---\n" + "\n\n".join(new))
            have_imports, have_defs = have_imports + imports, have_defs + defs
    if added:
        text = text.rstrip("\n") + "\n\n\n" + "\n\n\n".join(added) + "\n"
    return text


def assemble(course: Path, out: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """Write ``out/<student>/`` for every student in ``course/submitted``; returns student -> assignments."""
    course, out, root = Path(course).resolve(), Path(out).resolve(), Path(root).resolve()
    submitted = course / "submitted"
    if not submitted.is_dir():
        raise ValueError(
            f"{submitted} does not exist: collect the submissions first (in {course}: nbgrader collect ASSIGNMENT)"
        )
    blocks = all_blocks(root)
    homes = home_assignments(root, blocks)
    names = assignments(root)
    by_file: dict[str, list[Block]] = {}
    for b in blocks:
        if b.kind == "code":
            by_file.setdefault(b.file, []).append(b)
    found = {}
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir()):
        handed_in = [a for a in names if (student_dir / a).is_dir()]
        if not handed_in:
            continue
        dest = out / student_dir.name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for a in handed_in:
            (dest / a).mkdir()
            for nb in sorted((student_dir / a).glob("*.ipynb")):
                shutil.copy2(nb, dest / a / nb.name)
        for file, file_blocks in by_file.items():
            copies = {
                a: (student_dir / a / file).read_text(errors="replace")
                for a in handed_in
                if (student_dir / a / file).is_file()
            }
            if not copies:
                continue
            target = dest / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(merge_library_file(file, file_blocks, copies, homes, (root / file).read_text()))
        found[student_dir.name] = handed_in
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the nbgrader course directory")
    ex.add_argument("--out", type=Path, required=True, help="the course directory to write (nbgrader's root)")
    ex.add_argument("--course-id", default=COURSE_ID, help=f"nbgrader's course id (default {COURSE_ID})")
    sb = sub.add_parser("submissions", help="course folders for `make grade` from nbgrader's submitted/")
    sb.add_argument("--course", type=Path, required=True, help="the nbgrader course directory")
    sb.add_argument("--out", type=Path, required=True, help="where to write one folder per student")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            export(ROOT, args.out, args.course_id)
        else:
            found = assemble(args.course, args.out)
            for student, handed_in in found.items():
                print(f"{student}: {', '.join(handed_in)}")
            print(f"{len(found)} students in {args.out}; grade them with: make grade SUBMISSIONS={args.out}")
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
