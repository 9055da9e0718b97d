"""Write the student edition: ``python -m instructor.student [--out dist/student]`` (``make student``).

The edition is the course tree with every solution block replaced by its hint and a stub that raises
``NotImplementedError`` naming the function, its file and where it is checked; every written answer
replaced by a placeholder; outputs cleared; and everything that is the instructor's left out: this folder,
hidden tests (``tests/hidden/``), recorded benchmark figures, CI configuration, caches and git history.
It gets its own README and ``tools/exercises.json``, which the student's ``make test`` uses for its checklist.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from instructor.exercises import group, own_direct
from instructor.markers import (
    ANSWER_STUB,
    STUB_TAG,
    Block,
    all_blocks,
    parse_notebook,
    parse_python,
    read_notebook,
    stub_notebook,
    stub_python,
    write_notebook,
)
from instructor.reach import ReachMap

ROOT = Path(__file__).resolve().parent.parent
#: Paths (globs, relative to the root) that never reach students.
EXCLUDE = (
    "instructor/*",
    "tests/hidden/*",
    "tests/grading/*",
    "bench/RESULTS.md",
    "bench/grading.py",  # grades submissions: an instructor's tool
    ".ci/*",
    "INSTRUCTORS.md",
    "dist/*",
    ".gitattributes",
    ".cache/*",
    "datasets/*",
    "*.so",
    "*.c",
    "*.egg-info/*",
    ".venv/*",
    "build/*",
)
#: Kept although excluded above.
KEEP = ("datasets/README.md",)
#: Test folders the edition leaves out: no check a student runs may name them.
UNSHIPPED_TESTS = ("tests/hidden/", "tests/grading/")
STUDENT_README = "instructor/README.student.md"
EXERCISES_JSON = "tools/exercises.json"


def course_files(root: Path) -> list[str]:
    """Files of the course: what git tracks plus untracked files it does not ignore (else every file)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            check=True,
            capture_output=True,
        ).stdout.decode()
        files = [f for f in out.split("\0") if f and (root / f).is_file()]
    except (subprocess.CalledProcessError, FileNotFoundError):
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts]
    return sorted(files)


def is_excluded(rel: str) -> bool:
    if rel in KEEP:
        return False
    return any(fnmatch.fnmatch(rel, pat) for pat in EXCLUDE) or rel.startswith((".git/",))


def stub_message(block: Block, located: tuple[str, str]) -> str:
    where = f"{located[0]}, '{located[1]}'" if located and located[0] else "the unit tests"
    if block.kind == "cell":
        return f"{block.name} {STUB_TAG}: this cell; checked in {where}"
    return f"{block.function} {STUB_TAG}: {block.file}; checked in {where}"


def exercise_table(blocks: list[Block], reach: ReachMap) -> list[dict]:
    """One row per exercise (code blocks, notebook cells and answers), in the course's order of use."""
    rows = []
    direct = own_direct(blocks, reach.direct)
    # the graded exercise of each block ("affine" for affine_forward and affine_backward): what `make check` takes
    exercise_of = {b.id: ex.id.split("::", 1)[1] for ex in group(blocks) for b in ex.blocks}
    for b in blocks:
        nb, section = reach.located.get(b.id, ("", ""))
        rows.append(
            {
                "id": b.id,
                "file": b.file,
                "name": b.name,
                "function": b.function,
                "kind": b.kind,
                "exercise": exercise_of.get(b.id, b.name),
                "notebook": nb,
                "section": section,
                "tests": [t for t in reach.tests.get(b.id, []) if not t.startswith(UNSHIPPED_TESTS)],
                "direct": [t for t in direct.get(b.id, []) if not t.startswith(UNSHIPPED_TESTS)],
            }
        )
    # answers last; exercises in the order a student meets them: notebook by notebook as the README lists
    # them, cell by cell (blocks first met in the same cell keep their order in the file)
    place = {b.id: reach.position.get(b.id, (1 << 30, 0)) for b in blocks}
    return sorted(rows, key=lambda r: (r["kind"] == "answer", place[r["id"]]))


def render_readme(template: str, rows: list[dict]) -> str:
    lines = ["| # | what to write | where | first checked in |", "|---|---|---|---|"]
    n, seen = 0, set()
    for r in rows:
        # a function with several blocks is one row
        if r["kind"] == "answer" or (r["file"], r["function"]) in seen:
            continue
        seen.add((r["file"], r["function"]))
        n += 1
        where = r["file"] if r["kind"] == "code" else f"{r['file']} (cell `{r['name']}`)"
        check = f"{r['notebook']}, {r['section']}" if r["notebook"] else "unit tests"
        lines.append(f"| {n} | `{r['function']}` | `{where}` | {check} |")
    answers = sum(r["kind"] == "answer" for r in rows)
    table = "\n".join(lines) + f"\n\nand {answers} written answers in the notebooks (cells that say {ANSWER_STUB})."
    return template.replace("{{EXERCISES}}", table)


def build(root: Path = ROOT, out: Path | None = None, quiet: bool = False) -> dict:
    """Write the edition to ``out`` (default ``<root>/dist/student``); returns a summary dict."""
    start = time.perf_counter()
    root = Path(root).resolve()
    out = Path(out).resolve() if out is not None else root / "dist" / "student"
    if out == root or root in out.parents and out.parent.name != "dist":
        raise ValueError(f"refusing to write the edition to {out}: use a folder under {root / 'dist'} or outside")
    blocks = all_blocks(root)
    reach = ReachMap.build(root, blocks, test_folders=("tests",))
    messages = {b.id: stub_message(b, reach.located.get(b.id)) for b in blocks}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = [f for f in course_files(root) if not is_excluded(f)]
    for rel in files:
        src, dst = root / rel, out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".py") and rel.startswith("common/"):
            text = src.read_text()
            own = {b.name: messages[b.id] for b in parse_python(text, rel)} if "### BEGIN SOLUTION" in text else {}
            dst.write_text(stub_python(text, rel, own) if own else text)
        elif rel.endswith(".ipynb"):
            nb = read_notebook(src)
            own = {b.name: messages[b.id] for b in parse_notebook(nb, rel)}
            write_notebook(stub_notebook(nb, rel, own), dst)
        else:
            shutil.copy2(src, dst)
    rows = exercise_table(blocks, reach)
    (out / EXERCISES_JSON).parent.mkdir(parents=True, exist_ok=True)
    (out / EXERCISES_JSON).write_text(json.dumps({"exercises": rows}, indent=1) + "\n")
    template = (root / STUDENT_README).read_text()
    (out / "README.md").write_text(render_readme(template, rows))
    summary = {
        "out": str(out),
        "files": len(files),
        "exercises": sum(r["kind"] != "answer" for r in rows),
        "answers": sum(r["kind"] == "answer" for r in rows),
        "seconds": time.perf_counter() - start,
    }
    if not quiet:
        print(
            f"student edition: {summary['out']} ({summary['files']} files, {summary['exercises']} exercises, "
            f"{summary['answers']} written answers) in {summary['seconds']:.1f} s"
        )
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the edition (default dist/student)")
    args = parser.parse_args(argv)
    build(ROOT, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
