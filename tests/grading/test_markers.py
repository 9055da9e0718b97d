"""The solution markers: parsing, stubbing, putting solutions back, reading a student's work, merging."""

from __future__ import annotations

import json
import zipfile

import pytest

from instructor import grade
from instructor.markers import (
    ANSWER_STUB,
    BEGIN,
    END,
    STUB_TAG,
    STUDENT_BEGIN,
    STUDENT_END,
    MarkerError,
    answer_meta,
    code_solution_meta,
    fill_notebook,
    fill_python,
    fill_python_tolerant,
    lock_notebooks,
    nbgrader_checksum,
    notebook_work,
    parse_notebook,
    parse_python,
    parse_python_tolerant,
    stub_notebook,
    stub_python,
)

SOURCE = f'''"""A module."""
import numpy as np


def double(x):
    """2x."""
    # multiply by two
    {BEGIN}
    out = 2 * x
    {END}
    return out


class Net:
    def loss(self, x):
        n = len(x)
        # the mean of x
        {BEGIN}
        m = np.sum(x) / n
        {END}
        # and its square
        {BEGIN}
        s = m * m
        {END}
        return s
'''


def test_parse_names_hints_and_bodies():
    blocks = parse_python(SOURCE, "m.py")
    assert [b.name for b in blocks] == ["double", "Net.loss", "Net.loss#2"]
    assert [b.id for b in blocks][0] == "m.py::double"
    assert blocks[0].hint == ["    # multiply by two"]
    assert blocks[1].body == ["        m = np.sum(x) / n"]
    assert blocks[2].function == "Net.loss"


def test_stub_and_fill_round_trip():
    messages = {"double": "double is yours", "Net.loss": "loss is yours", "Net.loss#2": "loss2 is yours"}
    stubbed = stub_python(SOURCE, "m.py", messages)
    assert "2 * x" not in stubbed and "np.sum(x)" not in stubbed
    assert stubbed.count(STUDENT_BEGIN) == 3 and "# multiply by two" in stubbed
    assert 'raise NotImplementedError("double is yours")' in stubbed
    bodies = {b.name: b.body for b in parse_python(SOURCE, "m.py")}
    assert fill_python(stubbed, "m.py", bodies) == SOURCE
    ns: dict = {}
    exec(compile(stubbed, "m.py", "exec"), ns)
    with pytest.raises(NotImplementedError, match="double is yours"):
        ns["double"](1)


@pytest.mark.parametrize(
    "text, match",
    [
        (f"def f():\n    {BEGIN}\n    x = 1\n", "has no"),
        (f"def f():\n    {END}\n", "without"),
        (f"def f():\n    {BEGIN}\n    {BEGIN}\n    {END}\n", "inside another"),
        (f"{BEGIN}\nx = 1\n{END}\n", "inside a function"),
        (f"def f():\n    {BEGIN}\n        x = 1\n        {END}\n", "not indented"),
    ],
)
def test_bad_markers_raise(text, match):
    with pytest.raises(MarkerError, match=match):
        parse_python(text, "bad.py")


def test_tolerant_parse_survives_a_syntax_error_elsewhere():
    stubbed = stub_python(SOURCE, "m.py", {"double": "a", "Net.loss": "b", "Net.loss#2": "c"})
    broken = stubbed.replace("    return out", "    return out +")  # a syntax error outside the blocks
    found = parse_python_tolerant(broken, "m.py", STUDENT_BEGIN, STUDENT_END)
    assert set(found) == {"double", "Net.loss", "Net.loss#2"}
    # and a block's body can be replaced in it, the others left as they are
    filled = fill_python_tolerant(broken, {"Net.loss#2": ["        s = m ** 2"]}, STUDENT_BEGIN, STUDENT_END)
    again = parse_python_tolerant(filled, "m.py", STUDENT_BEGIN, STUDENT_END)
    assert again == {**found, "Net.loss#2": ["        s = m ** 2"]}
    assert "return out +" in filled


def _notebook():
    return {
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["## Part 1\n", "**Question.** Why?"]},
            {
                "cell_type": "markdown",
                "id": "b",
                "metadata": {"deletable": False, "nbgrader": answer_meta("q1")},
                "source": ["Because of the secret reason."],
            },
            {
                "cell_type": "code",
                "id": "c",
                "metadata": {"deletable": False, "nbgrader": code_solution_meta("c1")},
                "execution_count": 3,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": ["x"]}],
                "source": ["# compute y\n", f"{BEGIN}\n", "y = secret_formula(3)\n", f"{END}\n", "print(y)"],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_notebook_stub_fill_and_work():
    nb = _notebook()
    blocks = parse_notebook(nb, "n.ipynb")
    assert [(b.name, b.kind) for b in blocks] == [("q1", "answer"), ("c1", "cell")]
    student = stub_notebook(nb, "n.ipynb", {"c1": f"c1 {STUB_TAG}"})
    text = json.dumps(student)
    assert "secret" not in text and ANSWER_STUB in text
    assert student["cells"][2]["outputs"] == [] and student["cells"][2]["execution_count"] is None
    work = {"q1": ["Because of the secret reason."], "c1": ["y = secret_formula(3)"]}
    restored = fill_notebook(student, "n.ipynb", work)
    want = _notebook()
    want["cells"][2]["outputs"], want["cells"][2]["execution_count"] = [], None
    assert restored == want
    assert notebook_work(restored, "n.ipynb") == work


def test_edition_cells_carry_nbgraders_checksum_of_the_stub():
    """An untouched answer of the edition matches its checksum (nbgrader: not answered); an answered one does
    not. Putting the solutions back drops the checksums, which describe the stubs."""
    student = stub_notebook(_notebook(), "n.ipynb", {"c1": f"c1 {STUB_TAG}"})
    answer, code = student["cells"][1], student["cells"][2]
    for cell in (answer, code):
        assert cell["metadata"]["deletable"] is False
        assert cell["metadata"]["nbgrader"]["checksum"] == nbgrader_checksum(cell)
        assert cell["metadata"]["nbgrader"]["cell_type"] == cell["cell_type"]
    answered = json.loads(json.dumps(answer))
    answered["source"] = ["Because the scale changes."]
    assert answered["metadata"]["nbgrader"]["checksum"] != nbgrader_checksum(answered)
    restored = fill_notebook(student, "n.ipynb", {})
    assert all("checksum" not in c["metadata"].get("nbgrader", {}) for c in restored["cells"])


def test_checksum_is_nbgraders():
    """Our checksum against nbgrader's own, on the cell kinds nbgrader checksums."""
    utils = pytest.importorskip("nbgrader.utils")
    from nbformat import from_dict

    student = stub_notebook(_notebook(), "n.ipynb", {"c1": f"c1 {STUB_TAG}"})
    cells = [student["cells"][1], student["cells"][2]]
    cells.append({"cell_type": "markdown", "metadata": {"nbgrader": {**answer_meta("q2", 2.5)}}, "source": "x"})
    read_only = {"grade": False, "solution": False, "locked": True, "grade_id": "r1", "schema_version": 3}
    cells.append({"cell_type": "code", "metadata": {"nbgrader": read_only}, "source": "assert 1", "outputs": []})
    tests = {"grade": True, "solution": False, "grade_id": "t1", "points": 3, "schema_version": 3}
    cells.append({"cell_type": "code", "metadata": {"nbgrader": tests}, "source": "assert f(1) == 2", "outputs": []})
    for cell in cells:
        # nbformat.read gives nbgrader each source as one string
        as_read = from_dict({**cell, "source": "".join(cell["source"])})
        assert nbgrader_checksum(cell) == utils.compute_checksum(as_read)


def test_a_deletable_solution_cell_is_refused_until_locked(tmp_path):
    nb = _notebook()
    del nb["cells"][1]["metadata"]["deletable"]
    with pytest.raises(MarkerError, match="undeletable.*instructor.markers lock"):
        parse_notebook(nb, "n.ipynb")
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    assert lock_notebooks([path]) == [path]
    locked = json.loads(path.read_text())
    assert [b.name for b in parse_notebook(locked, "n.ipynb")] == ["q1", "c1"]
    assert locked["cells"][0]["metadata"] == {}  # only solution cells are locked
    assert lock_notebooks([path]) == []  # nothing left to change


def test_solution_markers_in_an_unmarked_cell_are_refused():
    nb = _notebook()
    del nb["cells"][2]["metadata"]["nbgrader"]
    with pytest.raises(MarkerError, match="not marked"):
        parse_notebook(nb, "n.ipynb")


def test_extras_keeps_new_helpers_and_imports_only():
    instructor = "import numpy as np\n\ndef f(x):\n    return x\n"
    student = "import numpy as np\nimport math\n\ndef f(x):\n    return 0\n\ndef _helper(y):\n    return math.sqrt(y)\n"
    imports, defs = grade.extras(student, instructor)
    assert imports == ["import math"]
    assert defs == ["def _helper(y):\n    return math.sqrt(y)"]
    assert grade.extras("def broken(:\n", instructor) == ([], [])


def test_not_started_recognises_only_the_stub():
    assert grade.not_started(['    raise NotImplementedError("f is yours to write: x")'])
    assert not grade.not_started(["    out = 1", '    raise NotImplementedError("f is yours to write")'])
    assert not grade.not_started(None)


def test_zip_with_a_path_outside_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        grade.unpack(bad, tmp_path / "into")
    assert not (tmp_path / "escape.txt").exists()


def test_zip_finds_the_course_folder_inside(tmp_path):
    good = tmp_path / "alice.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("alice-course/common/layers.py", "x = 1\n")
    root = grade.unpack(good, tmp_path / "into")
    assert (root / "common" / "layers.py").is_file()


def test_first_use_follows_the_notebooks_imports():
    """Where a student first meets a function is found through the notebook's imports: a name imported from
    another module (the NumPy ``MLP`` in MLP_Moons) or another library (``torch.Generator``) is not it."""
    from pathlib import Path

    from instructor.markers import all_blocks
    from instructor.reach import ReachMap

    root = Path(__file__).resolve().parents[2]
    reach = ReachMap.build(root, all_blocks(root))
    assert reach.located["common/torch_models/mlp.py::MLP.__init__"][0] == "assignment2/PyTorch.ipynb"
    assert reach.located["common/classifiers/mlp.py::Linear.forward"][0] == "assignment1/MLP_Moons.ipynb"
    assert reach.located["common/torch_models/gan.py::Generator.__init__"][0] == "assignment3/GAN_MNIST.ipynb"
    assert reach.located["common/layers.py::affine_forward"] == ("assignment1/FullyConnectedNets.ipynb", "Affine layer")
    # the exercises are listed in the order a student meets them
    first = min(reach.position.values())
    assert [b for b, p in reach.position.items() if p == first][0].startswith("common/classifiers/perceptron.py")


def test_an_exercise_is_decided_by_the_tests_that_call_it_by_name():
    """The tests that decide an exercise are those that call its function by name, resolved through the test
    file's imports (``torch.Generator`` is not the GAN's ``Generator``; a method by its name, even as a string
    given to ``getattr``); a separately written backward pass is an exercise of its own, graded with the
    forward pass whose cache it reads, and its tests are not the forward pass's."""
    from pathlib import Path

    from instructor.exercises import group
    from instructor.markers import all_blocks
    from instructor.reach import ReachMap

    root = Path(__file__).resolve().parents[2]
    blocks = all_blocks(root)
    exercises = {ex.id: ex for ex in group(blocks, ReachMap.build(root, blocks))}
    generator = exercises["common/torch_models/gan.py::Generator"]
    assert generator.direct and all(t.startswith("tests/test_gan.py::") for t in generator.direct)
    one_loop = exercises["common/classifiers/k_nearest_neighbor.py::KNearestNeighbor.compute_distances_one_loop"]
    assert "tests/test_knn.py::test_one_loop_distances_match_scipy" in one_loop.direct
    assert "tests/test_knn.py::test_two_loops_distances_match_scipy" not in one_loop.direct
    alt, batchnorm = exercises["common/layers.py::batchnorm_backward_alt"], exercises["common/layers.py::batchnorm"]
    assert [b.function for b in alt.blocks] == ["batchnorm_backward_alt"]
    assert [b.function for b in alt.partners] == ["batchnorm_forward"]
    assert "tests/test_layers.py::test_batchnorm_backward_alt" in alt.direct
    assert not set(alt.direct) & set(batchnorm.tests), "the closed form's tests must not decide batch norm"
    assert "tests/test_layers.py::test_batchnorm_backward" in batchnorm.tests
