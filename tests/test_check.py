"""``make check EXERCISE=...`` (tools/check.py) on a course of one exercise: it finds the exercise by its name or
a function's, runs only its checks, stops at the first failure and prints its message, and says when the
exercise is not started or the name names nothing."""

import json
from pathlib import Path

import pytest

from tools import check
from tools.markers import STUDENT_BEGIN, STUDENT_END

STUB = 'raise NotImplementedError("double is yours to write: common/mini.py")'
TESTS = """\
from common.mini import double, halve


def test_double_of_two():
    assert double(2) == 4, f"double(2) is {double(2)}: it must be 4 (did you add instead of multiply?)"


def test_double_of_a_negative():
    assert double(-3) == -6


def test_halve():
    assert halve(4) == 2
"""


def _course(root: Path, body: str) -> Path:
    (root / "common").mkdir(parents=True)
    (root / "common" / "__init__.py").write_text("")
    (root / "common" / "mini.py").write_text(
        f"def double(x):\n    {STUDENT_BEGIN}\n    {body}\n    {STUDENT_END}\n    return y\n\n\n"
        f"def halve(x):\n    {STUDENT_BEGIN}\n    y = x / 2\n    {STUDENT_END}\n    return y\n"
    )
    (root / "tests").mkdir()
    (root / "tests" / "test_mini.py").write_text(TESTS)
    rows = [
        {
            "id": f"common/mini.py::{name}",
            "file": "common/mini.py",
            "name": name,
            "function": name,
            "kind": "code",
            "exercise": name,
            "notebook": "",
            "tests": tests,
            "direct": tests,
        }
        for name, tests in (
            ("double", ["tests/test_mini.py::test_double_of_two", "tests/test_mini.py::test_double_of_a_negative"]),
            ("halve", ["tests/test_mini.py::test_halve"]),
        )
    ]
    (root / "tools").mkdir()
    (root / "tools" / "exercises.json").write_text(json.dumps({"exercises": rows}))
    return root


def test_a_right_exercise_passes_its_checks_only(tmp_path, capsys):
    root = _course(tmp_path / "course", "y = 2 * x")
    assert check.main(["double"], root=root) == 0
    out = capsys.readouterr().out
    assert "[x] tests/test_mini.py::test_double_of_two" in out and "all 2 checks pass" in out
    assert "test_halve" not in out


def test_the_first_failure_is_printed_with_its_message(tmp_path, capsys):
    root = _course(tmp_path / "course", "y = x + 2")
    assert check.main(["doub"], root=root) == 1  # a unique part of a name will do
    out = capsys.readouterr().out
    assert "[!] tests/test_mini.py::test_double_of_a_negative" in out
    assert "double(2) is 4" not in out and "did you add instead of multiply" not in out  # test_double_of_two passed
    root = _course(tmp_path / "course2", "y = x + 3")
    assert check.main(["double"], root=root) == 1
    out = capsys.readouterr().out
    assert "[!] tests/test_mini.py::test_double_of_two" in out
    assert "double(2) is 5: it must be 4 (did you add instead of multiply?)" in out
    assert "1 more check not run: fix this one first" in out


def test_not_started_unknown_and_the_list(tmp_path, capsys):
    root = _course(tmp_path / "course", STUB)
    assert check.main(["double"], root=root) == 1
    assert "not started" in capsys.readouterr().out
    assert check.main(["triple"], root=root) == 2
    assert "no exercise is called 'triple'" in capsys.readouterr().err
    assert check.main([], root=root) == 0
    listing = capsys.readouterr().out
    assert "[ ] double" in listing and "[-] halve" in listing and "make check EXERCISE=" in listing


def test_find_prefers_exact_names_and_refuses_ambiguous_parts():
    table = check.by_exercise(
        [
            {"exercise": "batchnorm", "function": f, "file": "common/layers.py", "kind": "code"}
            for f in ("batchnorm_forward", "batchnorm_backward")
        ]
        + [{"exercise": "layernorm", "function": "layernorm_forward", "file": "common/layers.py", "kind": "code"}]
    )
    assert check.find("batchnorm", table)[0] == "batchnorm"
    assert [r["function"] for r in check.find("batchnorm_backward", table)[1]] == ["batchnorm_backward"]
    assert check.find("layer", table)[0] == "layernorm"
    with pytest.raises(ValueError, match="several exercises: batchnorm, layernorm"):
        check.find("norm", table)
