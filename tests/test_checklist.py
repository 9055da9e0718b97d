"""The student's checklist: an exercise's status from its file and the JUnit reports of a test run."""

from pathlib import Path

from tools import checklist
from tools.markers import STUDENT_BEGIN, STUDENT_END

STUB = 'raise NotImplementedError("affine_forward is yours to write: common/layers.py")'


def _exercise(tests):
    return {"kind": "code", "function": "affine_forward", "file": "common/layers.py", "tests": tests, "notebook": ""}


def _junit(folder: Path, cases: dict[str, bool]) -> None:
    body = "".join(
        f'<testcase classname="tests.test_layers" name="{name}">'
        + ("" if ok else "<failure message='x'/>")
        + "</testcase>"
        for name, ok in cases.items()
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "unit.xml").write_text(f"<testsuites><testsuite>{body}</testsuite></testsuites>")


def _tree(root: Path, body: str) -> Path:
    (root / "common").mkdir(parents=True)
    (root / "common" / "layers.py").write_text(
        f"def affine_forward(x, w, b):\n    {STUDENT_BEGIN}\n    {body}\n    {STUDENT_END}\n"
    )
    return root


def test_stub_is_not_started_whatever_the_reports_say(tmp_path):
    root = _tree(tmp_path / "course", STUB)
    ex = _exercise(["tests/test_layers.py::test_affine_forward"])
    assert checklist.status(ex, {"tests/test_layers.py::test_affine_forward": True}, root) == "not started"


def test_written_exercise_passes_fails_or_was_not_run(tmp_path):
    root = _tree(tmp_path / "course", "return x @ w + b")
    ex = _exercise(["tests/test_layers.py::test_affine_forward", "tests/test_layers.py::test_affine_backward"])
    _junit(
        tmp_path / "r1", {"test_affine_forward[2]": True, "test_affine_forward[3]": True, "test_affine_backward": True}
    )
    results = checklist.read_reports(tmp_path / "r1")
    assert checklist.status(ex, results, root) == "passing"
    assert checklist.first_failing(ex, results) is None
    # one failing parametrised case fails the whole test, and the checklist names it
    _junit(tmp_path / "r2", {"test_affine_forward[2]": True, "test_affine_forward[3]": False})
    results = checklist.read_reports(tmp_path / "r2")
    assert checklist.status(ex, results, root) == "failing"
    assert checklist.first_failing(ex, results) == "tests/test_layers.py::test_affine_forward"
    assert checklist.status(ex, {}, root) == "not run"


def test_deleted_markers_count_as_failing(tmp_path):
    root = tmp_path / "course"
    (root / "common").mkdir(parents=True)
    (root / "common" / "layers.py").write_text("def affine_forward(x, w, b):\n    return x @ w + b\n")
    assert checklist.status(_exercise([]), {}, root) == "failing"


def test_the_tests_that_call_the_function_decide_when_there_are_some(tmp_path):
    """A model test that fails because of another exercise does not mark this one failing."""
    root = _tree(tmp_path / "course", "return x @ w + b")
    ex = {
        **_exercise(["tests/test_layers.py::test_affine_forward", "tests/test_layers.py::test_two_layer_net"]),
        "direct": ["tests/test_layers.py::test_affine_forward"],
    }
    _junit(tmp_path / "r", {"test_affine_forward": True, "test_two_layer_net": False})
    results = checklist.read_reports(tmp_path / "r")
    assert checklist.status(ex, results, root) == "passing"
    _junit(tmp_path / "r2", {"test_affine_forward": False, "test_two_layer_net": False})
    results = checklist.read_reports(tmp_path / "r2")
    assert checklist.status(ex, results, root) == "failing"
    assert checklist.first_failing(ex, results) == "tests/test_layers.py::test_affine_forward"
