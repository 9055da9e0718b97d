"""Solution markers: find the student's work in library files and notebooks, stub it, put it back.

In the instructor's tree (the solved copy):

- a library exercise is a block inside a function body, with a short hint in comments right above it::

      # hint: what to compute, which shapes
      ### BEGIN SOLUTION
      <the solution>
      ### END SOLUTION

  Its id is ``<file>::<function>`` (``common/layers.py::affine_forward``; ``Class.method`` for methods,
  ``#2``, ``#3`` ... for further blocks in one function);
- a notebook exercise is a code cell holding the same markers, marked as an nbgrader solution cell
  (``metadata.nbgrader.solution``) with a ``grade_id``; its id is ``<notebook>::<grade_id>``;
- a written answer is a Markdown cell marked as an nbgrader manually graded solution cell
  (``solution`` and ``grade`` true, ``points``, ``grade_id``); its id is ``<notebook>::<grade_id>``.

Solution cells (answers and notebook exercises) are ``deletable: false`` in the instructor tree already, as
nbgrader's release makes them, so that a student cannot delete one (``python -m instructor.markers lock``
sets it).

In the student edition a block keeps its hint; its markers become ``STUDENT_BEGIN``/``STUDENT_END`` and its
body one ``raise NotImplementedError(<message>)``; an answer cell becomes ``ANSWER_STUB``. Each solution cell
of the edition carries the checksum nbgrader computes for it (``nbgrader_checksum``), as nbgrader's own
release does, so nbgrader sees an untouched answer as unanswered (``nbgrader validate`` flags it; autograde
gives it zero instead of sending it to manual marking). A submission's work is read back from between the
student markers, so the instructor tree, the edition and a submission can always be matched block by block.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# the student's marks are defined once, in the module that ships with the edition (re-exported here)
from tools.markers import ANSWER_STUB, STUB_TAG, STUDENT_BEGIN, STUDENT_END  # noqa: F401

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"

NBGRADER_SCHEMA = 3
#: nbgrader metadata that describes a cell of a release (the stub it holds), not the instructor's cell: the
#: student edition adds them, putting the solutions back removes them.
RELEASE_KEYS = ("checksum", "cell_type")


class MarkerError(ValueError):
    """Markers that do not pair up, sit outside a function, or a solution cell without its metadata."""


@dataclass
class Block:
    """One piece of student work: a code block in a library file or notebook cell, or a written answer."""

    file: str  # path relative to the course root, with '/'
    name: str  # function qualname (library) or grade_id (notebook)
    kind: str  # 'code' (library block), 'cell' (notebook code block) or 'answer'
    body: list[str] = field(default_factory=list)  # lines between the markers (answer: the cell source lines)
    indent: str = ""
    hint: list[str] = field(default_factory=list)  # comment lines right above BEGIN
    start: int = -1  # library: index of the BEGIN line; notebook: index of the cell
    end: int = -1  # library: index of the END line

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"

    @property
    def function(self) -> str:
        """The bare function name a student sees (``affine_forward``, ``FullyConnectedNet.loss``)."""
        return self.name.split("#")[0]


# ---------------------------------------------------------------------------------------------------
# Library files
# ---------------------------------------------------------------------------------------------------


def _function_spans(text: str) -> list[tuple[int, int, str]]:
    """``(first_line, last_line, qualname)`` (0-based, inclusive) of every function in ``text``."""
    spans = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                spans.append((child.lineno - 1, child.end_lineno - 1, name))
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(text), "")
    return spans


def _enclosing_function(spans, line: int) -> str | None:
    inside = [s for s in spans if s[0] < line <= s[1]]
    return max(inside, key=lambda s: s[0])[2] if inside else None


def _pairs(lines: list[str], begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """Index pairs (begin line, end line) of the marker pairs in ``lines``."""
    pairs, open_at = [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if s == begin:
            if open_at is not None:
                raise MarkerError(f"{where}:{i + 1}: {begin!r} inside another block (opened at line {open_at + 1})")
            open_at = i
        elif s == end:
            if open_at is None:
                raise MarkerError(f"{where}:{i + 1}: {end!r} without a {begin!r} before it")
            if _indent(lines[i]) != _indent(lines[open_at]):
                raise MarkerError(f"{where}:{i + 1}: {end!r} is not indented like its {begin!r} (line {open_at + 1})")
            pairs.append((open_at, i))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{where}:{open_at + 1}: {begin!r} has no {end!r}")
    return pairs


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _hint_above(lines: list[str], i: int) -> list[str]:
    """The run of comment lines directly above line ``i`` (the exercise's hint)."""
    j = i
    while j > 0 and lines[j - 1].strip().startswith("#") and not lines[j - 1].strip().startswith("###"):
        j -= 1
    return lines[j:i]


def parse_python(text: str, file: str, begin: str = BEGIN, end: str = END) -> list[Block]:
    """Every marked block of a library file (``begin``/``end`` select instructor or student markers)."""
    lines = text.splitlines()
    pairs = _pairs(lines, begin, end, file)
    if not pairs:
        return []
    spans = _function_spans(text)
    blocks, seen = [], {}
    for b, e in pairs:
        func = _enclosing_function(spans, b)
        if func is None:
            raise MarkerError(f"{file}:{b + 1}: a solution block must sit inside a function body")
        seen[func] = seen.get(func, 0) + 1
        name = func if seen[func] == 1 else f"{func}#{seen[func]}"
        blocks.append(Block(file, name, "code", lines[b + 1 : e], _indent(lines[b]), _hint_above(lines, b), b, e))
    return blocks


def parse_python_tolerant(text: str, file: str, begin: str, end: str) -> dict[str, list[str]]:
    """``{name: body lines}`` of the blocks in a possibly broken file (a submission): markers are matched
    as text and each block is named by the nearest ``def`` above it (and its class), so a syntax error
    elsewhere in the file does not hide the other blocks. Unpaired markers are skipped."""
    lines = text.splitlines()
    out = {}
    for name, b, e in _tolerant_spans(lines, begin, end):
        out.setdefault(name, lines[b + 1 : e])
    return out


def _tolerant_spans(lines: list[str], begin: str, end: str) -> list[tuple[str, int, int]]:
    """``(name, begin line, end line)`` of the marker pairs found as text (see ``parse_python_tolerant``)."""
    spans, seen, open_at = [], {}, None
    for i, line in enumerate(lines):
        s = line.strip()
        if s == begin:
            open_at = i
        elif s == end and open_at is not None:
            func = _def_above(lines, open_at)
            if func:
                seen[func] = seen.get(func, 0) + 1
                spans.append((func if seen[func] == 1 else f"{func}#{seen[func]}", open_at, i))
            open_at = None
    return spans


def fill_python_tolerant(text: str, bodies: dict[str, list[str]], begin: str, end: str) -> str:
    """``text`` (a possibly broken file, such as a submission) with the bodies of the blocks named in ``bodies``
    replaced; blocks are found as ``parse_python_tolerant`` finds them, markers stay as they are."""
    lines = text.splitlines()
    for name, b, e in reversed(_tolerant_spans(lines, begin, end)):  # names are unique (#2, #3 ... suffixes)
        if name in bodies:
            lines[b + 1 : e] = list(bodies[name])
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)\s*\(")
_CLASS = re.compile(r"^(\s*)class\s+(\w+)\b")


def _def_above(lines: list[str], i: int) -> str | None:
    indent = len(_indent(lines[i]))
    func, func_indent = None, None
    for j in range(i - 1, -1, -1):
        line = lines[j]
        if func is None:
            m = _DEF.match(line)
            if m and len(m.group(1)) < indent:
                func, func_indent = m.group(2), len(m.group(1))
                if func_indent == 0:
                    return func
        else:
            m = _CLASS.match(line)
            if m and len(m.group(1)) < func_indent:
                return f"{m.group(2)}.{func}"
            if line.strip() and len(_indent(line)) == 0 and not line.lstrip().startswith(("#", "@", ")")):
                return func
    return func


def stub_lines(block: Block, message: str) -> list[str]:
    """What a block becomes in the student edition (the hint stays above it)."""
    return [
        block.indent + STUDENT_BEGIN,
        block.indent + f"raise NotImplementedError({json.dumps(message)})",
        block.indent + STUDENT_END,
    ]


def stub_python(text: str, file: str, messages: dict[str, str]) -> str:
    """``text`` with every solution block replaced by its stub; ``messages``: block name -> message."""
    lines = text.splitlines(keepends=False)
    blocks = parse_python(text, file)
    for block in reversed(blocks):
        lines[block.start : block.end + 1] = stub_lines(block, messages[block.name])
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def fill_python(
    text: str,
    file: str,
    bodies: dict[str, list[str]],
    begin: str = STUDENT_BEGIN,
    end: str = STUDENT_END,
    new_begin: str = BEGIN,
    new_end: str = END,
) -> str:
    """``text`` (a file with ``begin``/``end`` blocks) with the bodies of the named blocks replaced by
    ``bodies[name]`` and the markers turned into ``new_begin``/``new_end``. Blocks not in ``bodies`` keep
    their body (markers are still renamed)."""
    lines = text.splitlines()
    blocks = parse_python(text, file, begin, end)
    for block in reversed(blocks):
        body = bodies.get(block.name, block.body)
        lines[block.start : block.end + 1] = [block.indent + new_begin] + list(body) + [block.indent + new_end]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


# ---------------------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------------------


def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_notebook(nb: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def set_cell_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def nbgrader_meta(cell: dict) -> dict | None:
    return cell.get("metadata", {}).get("nbgrader")


def nbgrader_checksum(cell: dict) -> str:
    """The checksum nbgrader stores in a solution, graded or read-only cell when it releases a notebook
    (``nbgrader.utils.compute_checksum``): an MD5 of the source, the cell type, the grade/solution/locked flags,
    the ``grade_id`` and the points. For a solution cell it tells nbgrader whether the student changed it.
    Written out here so that the student edition needs no nbgrader; the tests compare it with nbgrader's."""
    meta = cell["metadata"]["nbgrader"]
    grade, solution = meta.get("grade", False), meta.get("solution", False)
    # nbgrader's is_locked: a solution cell never is, a graded cell always is, otherwise the 'locked' flag
    locked = False if solution else (True if grade else meta.get("locked", False))
    digest = hashlib.md5()
    for part in (cell_source(cell), cell["cell_type"], str(grade), str(solution), str(locked), meta["grade_id"]):
        digest.update(part.encode("utf-8"))
    if grade:
        digest.update(str(float(meta["points"])).encode("utf-8"))
    return digest.hexdigest()


def lock_cell(cell: dict) -> bool:
    """Make a cell undeletable (``metadata.deletable`` false, keys kept in nbformat's sorted order); returns
    True when that changed it."""
    if cell.get("metadata", {}).get("deletable") is False:
        return False
    cell["metadata"] = dict(sorted({**cell.get("metadata", {}), "deletable": False}.items()))
    return True


def parse_notebook(nb: dict, file: str, begin: str = BEGIN, end: str = END) -> list[Block]:
    """The code exercises and written answers of a notebook (see the module docstring)."""
    blocks, ids = [], set()
    for index, cell in enumerate(nb["cells"]):
        meta = nbgrader_meta(cell)
        text = cell_source(cell)
        lines = text.splitlines()
        has_markers = any(line.strip() == begin for line in lines)
        if meta is None or not meta.get("solution"):
            if has_markers:
                raise MarkerError(
                    f"{file}, cell {index}: solution markers in a cell that is not marked as an "
                    f"nbgrader solution cell (metadata.nbgrader.solution and a grade_id)"
                )
            continue
        grade_id = meta.get("grade_id")
        if not grade_id:
            raise MarkerError(f"{file}, cell {index}: an nbgrader solution cell needs a grade_id")
        if grade_id in ids:
            raise MarkerError(f"{file}: grade_id {grade_id!r} is used twice")
        ids.add(grade_id)
        if cell.get("metadata", {}).get("deletable") is not False:
            raise MarkerError(
                f"{file}, cell {grade_id!r}: a solution cell must be undeletable (metadata.deletable false, as "
                f"nbgrader releases it), or a student can delete it: run `python -m instructor.markers lock {file}`"
            )
        if cell["cell_type"] == "markdown":
            if not meta.get("grade") or "points" not in meta:
                raise MarkerError(
                    f"{file}, cell {grade_id!r}: a written answer must be a manually graded "
                    f"solution cell (solution and grade true, with points)"
                )
            blocks.append(Block(file, grade_id, "answer", lines, "", [], index))
        else:
            pairs = _pairs(lines, begin, end, f"{file} cell {grade_id!r}")
            if len(pairs) != 1:
                raise MarkerError(
                    f"{file}, cell {grade_id!r}: a solution code cell holds exactly one "
                    f"marked block, found {len(pairs)}"
                )
            ((b, e),) = pairs
            blocks.append(
                Block(file, grade_id, "cell", lines[b + 1 : e], _indent(lines[b]), _hint_above(lines, b), index, -1)
            )
    return blocks


def answer_meta(grade_id: str, points: float = 1) -> dict:
    """nbgrader metadata of a manually graded written answer (a Markdown solution cell)."""
    return {
        "grade": True,
        "grade_id": grade_id,
        "locked": False,
        "points": points,
        "schema_version": NBGRADER_SCHEMA,
        "solution": True,
        "task": False,
    }


def code_solution_meta(grade_id: str) -> dict:
    """nbgrader metadata of an autograded-answer code cell (a solution cell checked by later cells)."""
    return {
        "grade": False,
        "grade_id": grade_id,
        "locked": False,
        "schema_version": NBGRADER_SCHEMA,
        "solution": True,
        "task": False,
    }


def _release_cell(cell: dict) -> None:
    """Add what nbgrader's release adds to a stubbed solution cell: its checksum and cell type."""
    meta = cell["metadata"]["nbgrader"]
    meta.update(checksum=nbgrader_checksum(cell), cell_type=cell["cell_type"])
    cell["metadata"]["nbgrader"] = dict(sorted(meta.items()))


def stub_notebook(nb: dict, file: str, messages: dict[str, str]) -> dict:
    """A copy of ``nb`` with every exercise stubbed and every answer replaced by ``ANSWER_STUB``, each with
    nbgrader's checksum of the stub; outputs and execution counts cleared."""
    nb = json.loads(json.dumps(nb))
    for block in parse_notebook(nb, file):
        cell = nb["cells"][block.start]
        if block.kind == "answer":
            set_cell_source(cell, ANSWER_STUB)
        else:
            lines = cell_source(cell).splitlines()
            ((b, e),) = _pairs(lines, BEGIN, END, file)
            lines[b : e + 1] = stub_lines(block, messages[block.name])
            set_cell_source(cell, "\n".join(lines))
        _release_cell(cell)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def notebook_work(nb: dict, file: str) -> dict[str, list[str]]:
    """``{grade_id: lines}`` of a (student's) notebook: the body between the student markers (or, in the solved
    copy, the solution markers) of each code exercise, the whole source of each answer cell. Cells are matched
    by ``grade_id`` only; a code cell whose markers are gone is left out."""
    out = {}
    for cell in nb.get("cells", []):
        meta = nbgrader_meta(cell) or {}
        grade_id = meta.get("grade_id")
        if not meta.get("solution") or not grade_id:
            continue
        lines = cell_source(cell).splitlines()
        if cell.get("cell_type") == "markdown":
            out[grade_id] = lines
            continue
        for begin, end in ((STUDENT_BEGIN, STUDENT_END), (BEGIN, END)):
            starts = [i for i, line in enumerate(lines) if line.strip() == begin]
            ends = [i for i, line in enumerate(lines) if line.strip() == end]
            if starts and ends and ends[-1] > starts[0]:
                out[grade_id] = lines[starts[0] + 1 : next(e for e in ends if e > starts[0])]
                break
    return out


def fill_notebook(
    nb: dict,
    file: str,
    work: dict[str, list[str]],
    begin: str = STUDENT_BEGIN,
    end: str = STUDENT_END,
    new_begin: str = BEGIN,
    new_end: str = END,
) -> dict:
    """A copy of ``nb`` (an edition with ``begin``/``end`` markers) with each exercise's body and each answer
    taken from ``work`` (grade_id -> lines) where present, and the markers renamed. The release's checksums
    (``RELEASE_KEYS``) go: they describe the stubs."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        meta = nbgrader_meta(cell) or {}
        grade_id = meta.get("grade_id")
        if not meta.get("solution") or not grade_id:
            continue
        for key in RELEASE_KEYS:
            meta.pop(key, None)
        lines = cell_source(cell).splitlines()
        if cell["cell_type"] == "markdown":
            if grade_id in work:
                set_cell_source(cell, "\n".join(work[grade_id]))
            continue
        pairs = _pairs(lines, begin, end, f"{file} cell {grade_id!r}")
        for b, e in reversed(pairs):
            ind = _indent(lines[b])
            body = work.get(grade_id, lines[b + 1 : e])
            lines[b : e + 1] = [ind + new_begin] + list(body) + [ind + new_end]
        set_cell_source(cell, "\n".join(lines))
    return nb


# ---------------------------------------------------------------------------------------------------
# The whole course
# ---------------------------------------------------------------------------------------------------

#: Where marked work may live (relative to the course root).
LIBRARY_GLOBS = ("common/**/*.py",)
NOTEBOOK_GLOBS = ("assignment*/*.ipynb",)


def library_files(root: Path) -> list[Path]:
    return sorted({p for g in LIBRARY_GLOBS for p in root.glob(g)})


def notebook_files(root: Path) -> list[Path]:
    return sorted({p for g in NOTEBOOK_GLOBS for p in root.glob(g) if ".ipynb_checkpoints" not in p.parts})


def all_blocks(root: Path) -> list[Block]:
    """Every exercise and answer of the instructor tree at ``root``, library files first."""
    root = Path(root)
    blocks = []
    for path in library_files(root):
        text = path.read_text()
        if BEGIN in text:
            blocks += parse_python(text, path.relative_to(root).as_posix())
    for path in notebook_files(root):
        blocks += parse_notebook(read_notebook(path), path.relative_to(root).as_posix())
    return blocks


def lock_notebooks(paths: list[Path]) -> list[Path]:
    """Make every nbgrader solution cell of these notebooks undeletable; only the metadata of those cells
    changes, and only notebooks that change are written. Returns the notebooks written."""
    written = []
    for path in paths:
        nb = read_notebook(path)
        changed = [lock_cell(c) for c in nb.get("cells", []) if (nbgrader_meta(c) or {}).get("solution")]
        if any(changed):
            write_notebook(nb, path)
            written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Tools for the solution markers of the course's notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    lock = sub.add_parser("lock", help="make every solution cell (written answers, notebook exercises) undeletable")
    lock.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: every notebook of the course)")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    paths = args.notebooks or notebook_files(root)
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    written = lock_notebooks(paths)
    print(f"{len(written)} of {len(paths)} notebooks changed" + "".join(f"\n  {p}" for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
