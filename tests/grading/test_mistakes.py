"""The mistakes catalogue (instructor/mistakes.py): every edit applies inside its own block, and a message names
a mistake only when it holds all of its words."""

from instructor.markers import parse_python
from instructor.mistakes import MISTAKES, ROOT, Mistake, Outcome, mutate, validate


def test_every_catalogued_edit_applies_once_inside_its_block():
    assert validate(ROOT, MISTAKES) == []
    assert len(MISTAKES) >= 30 and len({m.block.split("::")[1] for m in MISTAKES}) >= 30


def test_a_mistake_changes_its_block_and_nothing_else():
    m = next(m for m in MISTAKES if m.id == "affine-db-mean")
    file = m.block.split("::")[0]
    before = (ROOT / file).read_text()
    after = mutate(before, file, m)
    old = {b.name: b.body for b in parse_python(before, file)}
    new = {b.name: b.body for b in parse_python(after, file)}
    assert [name for name in old if old[name] != new[name]] == ["affine_backward"]
    assert "db = dout.mean(axis=0)" in after and after.count("\n") == before.count("\n")


def test_named_needs_every_word_of_the_first_failure():
    m = Mistake("x", "common/layers.py::affine_backward", "", (("a", "b"),), ("1/3", "average"))
    out = Outcome(m, failed={"t1": "db is 1/3 ...: did you average?", "t2": "other"}, first="t1")
    out.message = out.failed["t1"]
    assert out.caught and out.named
    out.message = "db is 1/3 of the expected value"
    assert not out.named and out.named_anywhere
    assert not Outcome(m).caught and not Outcome(m).named
