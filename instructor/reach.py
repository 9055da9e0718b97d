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
    # the same without what the file imports from other libraries (``torch.Generator`` is not ours)
    own_refs: set[str] = field(default_factory=set)

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
        binds = _bindings(tree, root)

        def unit(qualname, node, module=module, binds=binds):
            own = {name for _, name in _resolved_refs(node, binds)}
            return _Unit(module, qualname, _names(node), own)

        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                units.append(unit(node.name, node))
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        units.append(unit(f"{node.name}.{item.name}", item))
                units.append(unit(node.name, node))
    return units


def _handles_of(block: Block) -> set[str]:
    parts = block.function.split(".")
    return {parts[0]} if len(parts) > 1 else {parts[-1]}


def reaching_pairs(block: Block, units: list[_Unit]) -> set[tuple[str, str]]:
    """Like :func:`reaching_names`, with the library file each handle is defined in: ``(file, handle)``."""
    pairs = {(block.file, h) for h in _handles_of(block)}
    changed = True
    while changed:
        changed = False
        names = {h for _, h in pairs}
        for unit in units:
            new = {(unit.module, h) for h in unit.handles}
            if unit.own_refs & names and not new <= pairs:
                pairs |= new
                changed = True
    return pairs


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


def _defined_here(node: ast.stmt) -> list[str]:
    """The names a module-level statement of a test file defines: functions, classes, plain assignments."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    return _assigned_names(node)


def _assigned_names(node: ast.stmt) -> list[str]:
    """The names a plain module-level assignment (``X = ...``, ``X: T = ...``) binds; [] for anything else."""
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        return [t.id for t in node.targets]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return [node.target.id]
    return []


@dataclass
class TestIndex:
    """Test node ids (``tests/test_x.py::test_name``) with the names each test reaches, helpers included
    (``tests``), and the same references resolved through the test file's imports (``calls``): a name that
    comes from another library (``torch.Generator``, ``nn.Linear``) is not ours, one imported from ``common``
    says which module it comes from, and a string that names a function or method (``getattr(knn, name)``)
    counts as a reference to it."""

    tests: dict[str, set[str]]
    calls: dict[str, set[tuple[str | None, str]]] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path, folders=("tests",)) -> TestIndex:
        tests, calls = {}, {}
        for folder in folders:
            for path in sorted((root / folder).rglob("test_*.py")):
                tree = ast.parse(path.read_text())
                rel = path.relative_to(root).as_posix()
                # names the test file defines are its own (a weights table called ``LSTM`` is not the class)
                binds = {
                    **{name: (rel, None) for node in tree.body for name in _defined_here(node)},
                    **_bindings(tree, root),
                }
                module_refs, helpers, aliases = set(), {}, {}
                module_calls, helper_calls = set(), {}
                for node in tree.body:
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        # a test's arguments name the fixtures it uses
                        args = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
                        helpers[node.name] = _names(node) | args
                        helper_calls[node.name] = _called(node, binds)
                    elif isinstance(node, (ast.Import, ast.ImportFrom)):
                        aliases.update({a.asname: a.name.split(".")[-1] for a in node.names if a.asname})
                    elif _assigned_names(node):
                        # a module-level table (``ACTIVATIONS = {...}``) reaches only the tests that use it
                        for target in _assigned_names(node):
                            helpers[target] = helpers.get(target, set()) | _names(node.value)
                            helper_calls[target] = helper_calls.get(target, set()) | _called(node.value, binds)
                    else:
                        module_refs |= _names(node)
                        module_calls |= _called(node, binds)
                # helpers (fixtures, check functions, parametrisation lists) count for every test using them
                for name, refs in helpers.items():
                    if not name.startswith("test") and not name.startswith("Test"):
                        continue
                    reach, frontier, used = set(refs) | module_refs, set(refs), {name}
                    while frontier:
                        nxt = set()
                        for h in frontier & set(helpers):
                            if h != name:
                                nxt |= helpers[h] - reach
                                used.add(h)
                        reach |= nxt
                        frontier = nxt
                    tests[f"{rel}::{name}"] = reach | {aliases[r] for r in reach if r in aliases}
                    calls[f"{rel}::{name}"] = module_calls.union(*(helper_calls[h] for h in used))
        return cls(tests, calls)

    def reaching(self, names: set[str], direct: set[str] = frozenset()) -> list[str]:
        """Tests that refer to any of ``names``; those referring to ``direct`` names first."""
        hits = [node for node, refs in self.tests.items() if refs & names]
        return sorted(hits, key=lambda node: not (self.tests[node] & direct))

    def calling(self, block: Block, classes: dict[tuple[str, str], LibraryClass]) -> list[str]:
        """Tests that call ``block``'s function by name: a function imported from its file (or a name no import
        explains); for a method, its class (or a subclass) from its file, and the method by name, unless
        constructing or calling the object runs it (``__init__``, ``__call__``, a torch module's ``forward``)."""
        parts = block.function.split(".")
        method = None
        if len(parts) == 1:
            wanted = {(block.file, parts[0])}
        else:
            cls = classes.get((block.file, parts[0]), LibraryClass())
            wanted = {(block.file, parts[0])} | cls.subclasses
            if not (parts[-1] in ("__init__", "__call__") or (parts[-1] == "forward" and cls.is_module)):
                method = parts[-1]
        hits = []
        for node, refs in self.calls.items():
            if not any(name == h and (m is None or _defined_in(m, f)) for m, name in refs for f, h in wanted):
                continue
            if method is None or (_ATTRIBUTE, method) in refs:
                hits.append(node)
        return hits


#: the module of a reference that can only be a method's name (an attribute, a string naming one)
_ATTRIBUTE = "."


def _called(node: ast.AST, binds: dict[str, tuple[str, str | None]]) -> set[tuple[str | None, str]]:
    """What test code refers to, resolved through its file's imports (see :func:`_resolved_refs`), plus every
    attribute name and every string that is an identifier as possible method names (``getattr(knn,
    "compute_distances_no_loops")`` names the method); those never match a function or class."""
    names = {
        (_ATTRIBUTE, n.value)
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier()
    }
    names |= {(_ATTRIBUTE, n.attr) for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    return _resolved_refs(node, binds) | names


@dataclass
class LibraryClass:
    """A class of the library: its subclasses there (``(file, name)``, transitively), and whether it is a
    torch module (calling the object runs its ``forward``)."""

    subclasses: set[tuple[str, str]] = field(default_factory=set)
    is_module: bool = False


def library_classes(root: Path) -> dict[tuple[str, str], LibraryClass]:
    """``{(library file, class name): LibraryClass}``; bases are matched by name across the library."""
    bases: dict[tuple[str, str], list[str]] = {}
    for path in library_files(root):
        module = path.relative_to(root).as_posix()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                bases[module, node.name] = [getattr(b, "id", None) or getattr(b, "attr", "") for b in node.bases]
    out = {}
    for key in bases:
        subs, frontier = set(), {key[1]}
        while frontier:
            new = {k for k, b in bases.items() if set(b) & frontier} - subs
            subs |= new
            frontier = {name for _, name in new}
        ancestors, frontier = set(), set(bases[key])
        while frontier:
            ancestors |= frontier
            frontier = {b for k, bs in bases.items() if k[1] in frontier for b in bs} - ancestors
        out[key] = LibraryClass(subs, "Module" in ancestors)
    return out


def _bindings(tree: ast.Module, root: Path) -> dict[str, tuple[str, str | None]]:
    """What a notebook's imports bind: name -> (module, imported name), or (module, None) for a module."""
    out: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = node.module.startswith("common") and (
                    (root / (sub.replace(".", "/") + ".py")).is_file() or (root / sub.replace(".", "/")).is_dir()
                )
                out[a.asname or a.name] = (sub, None) if is_module else (node.module, a.name)
    return out


def _resolved_refs(tree: ast.AST, binds: dict[str, tuple[str, str | None]]) -> set[tuple[str | None, str]]:
    """What a cell refers to, as ``(module, name)`` when the notebook's imports say where ``name`` comes from,
    else ``(None, name)``. Names and attributes of other libraries (``torch.Generator``) are left out."""
    out: set[tuple[str | None, str]] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            module, name = binds.get(n.id, (None, None))
            if module is None:
                out.add((None, n.id))
            elif name is not None and module.startswith("common"):
                out.add((module, name))
        elif isinstance(n, ast.Attribute):
            left = n.value  # the chain's leftmost name: ``np`` in ``np.random.Generator``
            while isinstance(left, ast.Attribute):
                left = left.value
            module, name = binds.get(left.id, (None, None)) if isinstance(left, ast.Name) else (None, None)
            if module is None:
                out.add((None, n.attr))
            elif name is None and module.startswith("common"):
                out.add((module if n.value is left else None, n.attr))
    return out


def _defined_in(module: str, file: str) -> bool:
    """Whether names imported from dotted ``module`` can be the ones defined in library ``file``."""
    path = module.replace(".", "/")
    return file == f"{path}.py" or file.startswith(f"{path}/")


@dataclass
class NotebookIndex:
    """Per notebook: the names each code cell refers to, and the section heading above each cell; and the
    same references resolved through the notebook's imports (``resolved``), to say where a student first
    meets a function."""

    cells: dict[str, list[tuple[set[str], str]]]
    resolved: dict[str, list[set[tuple[str | None, str]]]] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path) -> NotebookIndex:
        cells, resolved = {}, {}
        for path in notebook_files(root):
            rel = path.relative_to(root).as_posix()
            section, rows, trees = "", [], []
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
                    tree = None
                    refs = set(re.findall(r"[A-Za-z_]\w*", text))
                rows.append((refs, section))
                trees.append(tree)
            cells[rel] = rows
            binds = _bindings(ast.Module(body=[t for t in trees if t is not None], type_ignores=[]), root)
            resolved[rel] = [
                {(None, r) for r in refs}
                if tree is None
                else set().union(
                    *[_resolved_refs(n, binds) for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
                )
                for tree, (refs, _) in zip(trees, rows)
            ]
        return cls(cells, resolved)

    def reaching(self, names: set[str]) -> list[str]:
        return [nb for nb, rows in self.cells.items() if any(refs & names for refs, _ in rows)]

    def first_use(self, pairs: set[tuple[str, str]], order: list[str]) -> tuple[str, str, tuple[int, int]] | None:
        """``(notebook, section, (notebook's place in the course, code cell's place in it))`` of the first cell,
        in course order, that refers to one of ``pairs`` (``(library file, name)``), as its imports resolve."""
        names = {h for _, h in pairs}
        for i, nb in enumerate(order):
            for j, ((_, section), refs) in enumerate(zip(self.cells.get(nb, []), self.resolved.get(nb, []))):
                for module, name in refs:
                    if name in names and (
                        module is None or any(h == name and _defined_in(module, f) for f, h in pairs)
                    ):
                        return nb, section, (i, j)
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
    """For every block: the tests and notebooks that can reach it, the tests that call it directly (see
    :meth:`TestIndex.calling`), and where a student meets it first."""

    tests: dict[str, list[str]]
    notebooks: dict[str, list[str]]
    located: dict[str, tuple[str, str]]
    direct: dict[str, list[str]] = field(default_factory=dict)
    # where ``located`` is in the course: (notebook's place in the README's order, code cell's place in it)
    position: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path, blocks: list[Block], test_folders=("tests",)) -> ReachMap:
        root = Path(root)
        units = _library_units(root)
        classes = library_classes(root)
        tindex, nindex = TestIndex.build(root, test_folders), NotebookIndex.build(root)
        order = course_order(root)
        tests, notebooks, located, direct, position = {}, {}, {}, {}, {}
        unplaced = (len(order), 0)
        for block in blocks:
            if block.kind in ("cell", "answer"):
                tests[block.id], notebooks[block.id], direct[block.id] = [], [block.file], []
                located[block.id] = (block.file, _section_of_cell(root / block.file, block.start))
                place = order.index(block.file) if block.file in order else len(order)
                position[block.id] = (place, block.start)
                continue
            names = reaching_names(block, units)
            tests[block.id] = tindex.reaching(names, _handles_of(block))
            direct[block.id] = tindex.calling(block, classes)
            notebooks[block.id] = [nb for nb in order if nb in set(nindex.reaching(names))]
            own = {(block.file, h) for h in _handles_of(block)}
            first = nindex.first_use(own, order) or nindex.first_use(reaching_pairs(block, units), order)
            located[block.id] = first[:2] if first else ("", "")
            position[block.id] = first[2] if first else unplaced
        return cls(tests, notebooks, located, direct, position)


def _section_of_cell(path: Path, index: int) -> str:
    section = ""
    for cell in read_notebook(path)["cells"][: index + 1]:
        if cell["cell_type"] == "markdown":
            for line in cell_source(cell).splitlines():
                m = _HEADING.match(line)
                if m:
                    section = m.group(2).strip("* ")
    return section
