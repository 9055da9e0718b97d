"""Exercises as graded units, and their points.

A graded exercise is a family of blocks that belong together: a layer's forward and backward passes
(``affine_forward`` + ``affine_backward``), a class's ``__init__``/``forward``/``backward``, or a single
function. A family is graded as a unit, with the student's functions throughout or the reference's
throughout, never mixed, because a backward pass may rely on the cache its own forward pass returns.

A second backward pass written separately (``batchnorm_backward_alt``, the closed form) is an exercise of
its own, so that leaving it unstarted costs only its points. It reads the cache of the family's forward
pass, so it runs with the student's forward pass (its *partner*), and the tests that call it decide it
alone: they are not the forward pass's checks.

Points live in ``instructor/points.toml`` (the one place an instructor edits them); every exercise and
every written answer not listed there gets the default, 1 point unless set otherwise.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from instructor.markers import Block

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POINTS_FILE = Path(__file__).resolve().parent / "points.toml"

_SUFFIXES = re.compile(r"(_forward|_backward)(_naive|_fast)?$")
_GROUPED_METHODS = {"__init__", "forward", "backward"}
#: a separately written backward pass and the forward pass whose cache it reads
_PARTNER = (re.compile(r"^(\w+)_backward_alt$"), r"\1_forward")


def family_of(block: Block) -> str:
    """The graded unit a block belongs to (see the module docstring)."""
    if block.kind in ("cell", "answer"):
        return block.name
    name = block.function
    if "." in name:
        cls, method = name.rsplit(".", 1)
        return cls if method in _GROUPED_METHODS else name
    return _SUFFIXES.sub("", name) or name


def partner_of(block: Block) -> str | None:
    """The function (same file) whose cache ``block``'s function reads while being an exercise of its own:
    ``batchnorm_backward_alt`` -> ``batchnorm_forward``; None for everything else."""
    pattern, replacement = _PARTNER
    if block.kind != "code" or not pattern.match(block.function):
        return None
    return pattern.sub(replacement, block.function)


def own_direct(blocks: list[Block], direct: dict[str, list[str]]) -> dict[str, list[str]]:
    """``direct`` (block id -> the tests that call it by name) without, for every block whose cache a separate
    exercise reads (see :func:`partner_of`), the tests of that exercise: a test of ``batchnorm_backward_alt``
    calls ``batchnorm_forward`` too, but an unstarted or wrong closed form must not fail batch norm."""
    out = {k: list(v) for k, v in direct.items()}
    for b in blocks:
        partner = partner_of(b)
        if partner is None:
            continue
        family = family_of(next((p for p in blocks if p.file == b.file and p.function == partner), b))
        theirs = set(direct.get(b.id, []))
        for p in blocks:
            if p.file == b.file and p.kind == "code" and family_of(p) == family and p.id != b.id:
                out[p.id] = [t for t in out.get(p.id, []) if t not in theirs]
    return out


@dataclass
class Exercise:
    """A graded unit: its blocks, its points, and the checks that decide it."""

    id: str  # '<file>::<family>'
    file: str
    family: str
    blocks: list[Block] = field(default_factory=list)
    # blocks of another exercise that must be the student's too when this one runs (the forward pass whose
    # cache a separate backward pass reads); they are graded with their own exercise
    partners: list[Block] = field(default_factory=list)
    points: float = 1.0
    tests: list[str] = field(default_factory=list)  # the checks that decide it
    direct: list[str] = field(default_factory=list)  # tests that call its functions (or class) by name
    reach: list[str] = field(default_factory=list)  # every test that can reach it
    notebooks: list[str] = field(default_factory=list)

    @property
    def block_ids(self) -> list[str]:
        return [b.id for b in self.blocks]


def load_points(path: Path = POINTS_FILE) -> dict:
    """``{'default': float, 'answer_default': float, 'exercises': {id: points}, 'answers': {id: points}}``."""
    data = tomllib.loads(path.read_text()) if path.is_file() else {}
    return {
        "default": float(data.get("default", 1)),
        "answer_default": float(data.get("answer_default", 1)),
        "exercises": {k: float(v) for k, v in data.get("exercises", {}).items()},
        "answers": {k: float(v) for k, v in data.get("answers", {}).items()},
    }


def group(blocks: list[Block], reach=None, points: dict | None = None) -> list[Exercise]:
    """Code blocks grouped into exercises, in the order of their first block, with points and checks."""
    points = points or load_points()
    out: dict[str, Exercise] = {}
    direct = own_direct(blocks, reach.direct) if reach is not None else {}
    sizes: dict[tuple[str, str], int] = {}
    for b in blocks:
        sizes[b.file, family_of(b)] = sizes.get((b.file, family_of(b)), 0) + 1
    for b in blocks:
        if b.kind == "answer":
            continue
        fam = family_of(b)
        if sizes[b.file, fam] == 1 and "." in b.function:  # a lone forward/__init__ keeps its own name
            fam = b.function
        ex_id = f"{b.file}::{fam}"
        ex = out.setdefault(
            ex_id, Exercise(ex_id, b.file, fam, points=points["exercises"].get(ex_id, points["default"]))
        )
        ex.blocks.append(b)
        if reach is not None:
            ex.reach += [t for t in reach.tests.get(b.id, []) if t not in ex.reach]
            ex.direct += [t for t in direct.get(b.id, []) if t not in ex.direct]
            ex.notebooks += [n for n in reach.notebooks.get(b.id, []) if n not in ex.notebooks]
    for b in blocks:
        partner = partner_of(b)
        for ex in out.values():
            if partner and b in ex.blocks:
                ex.partners += [p for p in blocks if p.file == b.file and p.function == partner]
    for ex in out.values():
        # the tests that call the exercise by name decide it; tests that only reach it through other code
        # (a model built on a layer) decide those other exercises
        ex.tests = ex.direct or ex.reach
    unknown = set(points["exercises"]) - set(out)
    if unknown:
        raise ValueError(
            f"{POINTS_FILE.name} names exercises that do not exist: {', '.join(sorted(unknown))}; "
            f"exercise ids look like {next(iter(out), 'common/layers.py::affine')}"
        )
    return list(out.values())


def answer_points(blocks: list[Block], points: dict | None = None) -> dict[str, float]:
    """``{answer id: points}`` for the written answers."""
    points = points or load_points()
    return {b.id: points["answers"].get(b.id, points["answer_default"]) for b in blocks if b.kind == "answer"}
