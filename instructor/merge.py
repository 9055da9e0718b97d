"""Building the tree to run: the instructor's files with the student's work put into their blocks."""

from __future__ import annotations

import json
from pathlib import Path

from instructor.markers import BEGIN, END, Block, fill_notebook, fill_python, read_notebook, write_notebook
from instructor.submission import Work


def _stub(block: Block, why: str) -> list[str]:
    return [block.indent + f"raise NotImplementedError({json.dumps(f'{block.function}: {why}')})"]


def _block_compiles(text: str) -> bool:
    try:
        compile(text, "<merged>", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def merge_file(
    instructor_text: str, file: str, blocks: list[Block], work: Work, student_ids: set[str]
) -> tuple[str, dict[str, str]]:
    """The instructor file with the student's body in each block of ``student_ids`` (the reference elsewhere)
    and the student's extra imports and helpers. A block that does not compile, or is missing, becomes a stub
    raising with the reason. Returns ``(text, {block id: problem})``."""
    problems = {}
    bodies = {}
    for b in blocks:
        if b.id not in student_ids:
            continue
        body = work.bodies.get(b.id)
        bodies[b.name] = body if body is not None else _stub(b, work.problems.get(b.id, "missing"))
    merged = fill_python(instructor_text, file, bodies, BEGIN, END, BEGIN, END)
    if not _block_compiles(merged):  # find the blocks that break it, keep the others
        for b in blocks:
            if b.name in bodies and not _block_compiles(
                fill_python(instructor_text, file, {b.name: bodies[b.name]}, BEGIN, END, BEGIN, END)
            ):
                bodies[b.name] = _stub(b, "a syntax error in your code")
                problems[b.id] = "a syntax error (or bad indentation) in the block"
        merged = fill_python(instructor_text, file, bodies, BEGIN, END, BEGIN, END)
    if any(b.id in student_ids for b in blocks):
        imports, defs = work.extras.get(file, ([], []))
        extra = "\n".join(imports + [""] + defs) if (imports or defs) else ""
        if extra and _block_compiles(merged + "\n\n" + extra):
            merged = merged.rstrip("\n") + "\n\n\n# --- added by the student ---\n" + extra + "\n"
    return merged, problems


def build_tree(
    instructor_root: Path, dest: Path, blocks: list[Block], work: Work, student_ids: set[str]
) -> dict[str, str]:
    """Write into ``dest`` (a copy of the instructor tree) the student's work for ``student_ids``."""
    problems = {}
    by_file: dict[str, list[Block]] = {}
    for b in blocks:
        if b.kind != "answer":
            by_file.setdefault(b.file, []).append(b)
    for file, file_blocks in by_file.items():
        original = instructor_root / file
        if file.endswith(".ipynb"):
            nb = read_notebook(original)
            cells = {
                b.name: (
                    work.bodies.get(b.id)
                    if work.bodies.get(b.id) is not None
                    else _stub(b, work.problems.get(b.id, "missing"))
                )
                for b in file_blocks
                if b.id in student_ids
            }
            write_notebook(fill_notebook(nb, file, cells, BEGIN, END, BEGIN, END), dest / file)
        else:
            text, found = merge_file(original.read_text(), file, file_blocks, work, student_ids)
            problems.update(found)
            (dest / file).write_text(text)
    return problems
