"""Which checks can reach an exercise: a static map from each marked block to the unit tests and notebooks
whose code refers to it, directly or through the library functions that call it.

Names are matched as identifiers (calls, attribute accesses, imports), so the map errs on the side of
including a check; ``check_release`` then proves by running them that at least one fails on the stub.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from instructor.markers import Block, cell_source, library_files, notebook_files, read_notebook

_HEADING = re.compile(r"^(#{1,4})\s+(.*\S)\s*$")


def _names(node: ast.AST) -> set[str]:
    """Identifiers a piece of code refers to: names, attributes, imported names and their aliases."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.ImportFrom):
            out.update(a.name for a in n.names)
    return out


@dataclass
class _Unit:
    """A library function or method: its names and what it refers to."""

    module: str
    qualname: str
    refs: set[str] = field(default_factory=set)

    @property
    def handles(self) -> set[str]:
        """The names by which other code reaches this unit: a function's name, a method's class."""
        parts = self.qualname.split(".")
        return {parts[0]} if len(parts) > 1 else {parts[-1]}


def _library_units(root: Path) -> list[_Unit]:
    units = []
    for path in library_files(root):
        tree = ast.parse(path.read_text())
        module = path.relative_to(root).as_posix()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                units.append(_Unit(module, node.name, _names(node)))
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        units.append(_Unit(module, f"{node.name}.{item.name}", _names(item)))
                units.append(_Unit(module, node.name, _names(node)))
    return units


def _handles_of(block: Block) -> set[str]:
    parts = block.function.split(".")
    return {parts[0]} if len(parts) > 1 else {parts[-1]}


def reaching_names(block: Block, units: list[_Unit]) -> set[str]:
    """The block's own handles plus those of every library unit that calls it, transitively."""
    names = set(_handles_of(block))
    changed = True
    while changed:
        changed = False
        for unit in units:
            if unit.refs & names and not unit.handles <= names:
                names |= unit.handles
                changed = True
    return names


@dataclass
class TestIndex:
    """Test node ids (``tests/test_x.py::test_name``) with the names each test reaches, helpers included."""

    tests: dict[str, set[str]]

    @classmethod
    def build(cls, root: Path, folders=("tests",)) -> TestIndex:
        tests = {}
        for folder in folders:
            for path in sorted((root / folder).rglob("test_*.py")):
                tree = ast.parse(path.read_text())
                rel = path.relative_to(root).as_posix()
                module_refs, helpers, aliases = set(), {}, {}
                for node in tree.body:
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        helpers[node.name] = _names(node)
                    elif isinstance(node, (ast.Import, ast.ImportFrom)):
                        aliases.update({a.asname: a.name.split(".")[-1] for a in node.names if a.asname})
                    else:
                        module_refs |= _names(node)
                # helpers (fixtures, check functions, parametrisation lists) count for every test using them
                for name, refs in helpers.items():
                    if not name.startswith("test") and not name.startswith("Test"):
                        continue
                    reach, frontier = set(refs) | module_refs, set(refs)
                    while frontier:
                        nxt = set()
                        for h in frontier & set(helpers):
                            if h != name:
                                nxt |= helpers[h] - reach
                        reach |= nxt
                        frontier = nxt
                    tests[f"{rel}::{name}"] = reach | {aliases[r] for r in reach if r in aliases}
        return cls(tests)

    def reaching(self, names: set[str], direct: set[str] = frozenset()) -> list[str]:
        """Tests that refer to any of ``names``; those referring to ``direct`` names first."""
        hits = [node for node, refs in self.tests.items() if refs & names]
        return sorted(hits, key=lambda node: not (self.tests[node] & direct))


@dataclass
class NotebookIndex:
    """Per notebook: the names each code cell refers to, and the section heading above each cell."""

    cells: dict[str, list[tuple[set[str], str]]]

    @classmethod
    def build(cls, root: Path) -> NotebookIndex:
        cells = {}
        for path in notebook_files(root):
            rel = path.relative_to(root).as_posix()
            section, rows = "", []
            for cell in read_notebook(path)["cells"]:
                text = cell_source(cell)
                if cell["cell_type"] == "markdown":
                    for line in text.splitlines():
                        m = _HEADING.match(line)
                        if m:
                            section = m.group(2).strip("* ")
                    continue
                try:
                    tree = ast.parse(_strip_magics(text))
                    # names a cell uses, not the ones it only imports (a setup cell imports everything)
                    refs = set().union(
                        *[_names(n) for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
                    )
                except SyntaxError:
                    refs = set(re.findall(r"[A-Za-z_]\w*", text))
                rows.append((refs, section))
            cells[rel] = rows
        return cls(cells)

    def reaching(self, names: set[str]) -> list[str]:
        return [nb for nb, rows in self.cells.items() if any(refs & names for refs, _ in rows)]

    def first_use(self, names: set[str], order: list[str]) -> tuple[str, str] | None:
        """``(notebook, section)`` of the first cell, in course order, that refers to one of ``names``."""
        for nb in order:
            for refs, section in self.cells.get(nb, []):
                if refs & names:
                    return nb, section
        return None


def _strip_magics(text: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines())


def course_order(root: Path) -> list[str]:
    """Notebooks in the order the README lists them (then any others, sorted)."""
    readme = (root / "README.md").read_text() if (root / "README.md").exists() else ""
    listed = re.findall(r"\((assignment\d/[\w-]+\.ipynb)\)", readme)
    found = [p.relative_to(root).as_posix() for p in notebook_files(root)]
    order = [nb for nb in dict.fromkeys(listed) if nb in found]
    return order + sorted(set(found) - set(order))


@dataclass
class ReachMap:
    """For every block: the tests and notebooks that can reach it, the tests that call it directly (by its
    own name, or its class's), and where a student meets it first."""

    tests: dict[str, list[str]]
    notebooks: dict[str, list[str]]
    located: dict[str, tuple[str, str]]
    direct: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path, blocks: list[Block], test_folders=("tests",)) -> ReachMap:
        root = Path(root)
        units = _library_units(root)
        tindex, nindex = TestIndex.build(root, test_folders), NotebookIndex.build(root)
        order = course_order(root)
        tests, notebooks, located, direct = {}, {}, {}, {}
        for block in blocks:
            if block.kind in ("cell", "answer"):
                tests[block.id], notebooks[block.id], direct[block.id] = [], [block.file], []
                located[block.id] = (block.file, _section_of_cell(root / block.file, block.start))
                continue
            names = reaching_names(block, units)
            tests[block.id] = tindex.reaching(names, _handles_of(block))
            direct[block.id] = tindex.reaching(_handles_of(block))
            notebooks[block.id] = [nb for nb in order if nb in set(nindex.reaching(names))]
            first = nindex.first_use(_handles_of(block), order) or nindex.first_use(names, order)
            located[block.id] = first or ("", "")
        return cls(tests, notebooks, located, direct)


def _section_of_cell(path: Path, index: int) -> str:
    section = ""
    for cell in read_notebook(path)["cells"][: index + 1]:
        if cell["cell_type"] == "markdown":
            for line in cell_source(cell).splitlines():
                m = _HEADING.match(line)
                if m:
                    section = m.group(2).strip("* ")
    return section
