"""Reading a submission: the student's course folder or .zip, and the work found between the markers."""

from __future__ import annotations

import ast
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from instructor.markers import (
    ANSWER_STUB,
    BEGIN,
    END,
    STUB_TAG,
    STUDENT_BEGIN,
    STUDENT_END,
    Block,
    notebook_work,
    parse_python_tolerant,
    read_notebook,
)

ROOT = Path(__file__).resolve().parent.parent
#: The most a submission's .zip may unpack to.
MAX_UNZIPPED_BYTES = 2 << 30


def unpack(path: Path, into: Path) -> Path:
    """The course root of a submission: the folder itself, or a .zip unpacked safely into ``into``."""
    path = Path(path)
    if path.is_dir():
        root = path
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            total = 0
            for info in zf.infolist():
                target = (into / info.filename).resolve()
                if into.resolve() not in target.parents and target != into.resolve():
                    raise ValueError(f"{path.name}: refuses the archive member {info.filename!r} (outside the folder)")
                total += info.file_size
                if total > MAX_UNZIPPED_BYTES:
                    raise ValueError(f"{path.name}: unpacks to more than {MAX_UNZIPPED_BYTES >> 20} MB")
            zf.extractall(into)
        root = into
    else:
        raise ValueError(f"{path}: neither a course folder nor a .zip of one")
    candidates = [p.parent.parent for p in sorted(root.rglob("common/layers.py")) if ".venv" not in p.parts]
    if not candidates:
        return root  # nothing recognisable: every exercise is missing
    return min(candidates, key=lambda p: len(p.parts))


def _defined_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def extras(student_text: str, instructor_text: str) -> tuple[list[str], list[str]]:
    """``(imports, definitions)``: top-level imports and functions/classes of the student's file that the
    instructor's file does not have (as source text). Nothing when the student's file does not parse."""
    try:
        tree = ast.parse(student_text)
    except SyntaxError:
        return [], []
    ref = ast.parse(instructor_text)
    have = _defined_names(ref)
    ref_imports = {ast.unparse(n) for n in ref.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    lines = student_text.splitlines()
    imports, defs = [], []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            text = ast.unparse(node)
            if text not in ref_imports and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                imports.append(text)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name not in have:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            defs.append("\n".join(lines[start : node.end_lineno]))
    return imports, defs


@dataclass
class Work:
    """The student's work read from one submission."""

    bodies: dict[str, list[str] | None] = field(default_factory=dict)  # block id -> lines (None: missing)
    extras: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # file -> (imports, defs)
    answers: dict[str, str | None] = field(default_factory=dict)  # answer id -> Markdown
    problems: dict[str, str] = field(default_factory=dict)  # block id -> why it is missing


def read_work(sub_root: Path, blocks: list[Block], instructor_root: Path = ROOT) -> Work:
    work = Work()
    by_file: dict[str, list[Block]] = {}
    for b in blocks:
        by_file.setdefault(b.file, []).append(b)
    for file, file_blocks in by_file.items():
        path = sub_root / file
        if not path.is_file():
            for b in file_blocks:
                work.problems[b.id] = f"{file} is missing from the submission"
                if b.kind == "answer":
                    work.answers[b.id] = None
                else:
                    work.bodies[b.id] = None
            continue
        if file.endswith(".ipynb"):
            try:
                found = notebook_work(read_notebook(path), file)
            except (ValueError, KeyError, TypeError):
                found = {}
                for b in file_blocks:
                    work.problems[b.id] = f"{file} is not a readable notebook"
            for b in file_blocks:
                lines = found.get(b.name)
                if b.kind == "answer":
                    text = "\n".join(lines) if lines is not None else None
                    work.answers[b.id] = None if text is None or text.strip() == ANSWER_STUB else text
                else:
                    work.bodies[b.id] = lines
                    if lines is None:
                        work.problems.setdefault(b.id, f"cell {b.name!r} or its markers were deleted")
            continue
        text = path.read_text(errors="replace")
        # the student's markers; the instructor's solved tree (solution markers) grades the same way
        found = {
            **parse_python_tolerant(text, file, BEGIN, END),
            **parse_python_tolerant(text, file, STUDENT_BEGIN, STUDENT_END),
        }
        for b in file_blocks:
            work.bodies[b.id] = found.get(b.name)
            if found.get(b.name) is None:
                work.problems[b.id] = f"the markers of {b.function} in {file} were deleted or renamed"
        work.extras[file] = extras(text, (instructor_root / file).read_text())
    return work


def not_started(body: list[str] | None) -> bool:
    return (
        body is not None
        and any(STUB_TAG in line for line in body)
        and all(STUB_TAG in line or not line.strip() or line.strip().startswith("#") for line in body)
    )
