"""Grading a class on Dask (instructor/cluster.py) with a fake, fast grading function: a local cluster of two
single-thread workers grades a class; a worker killed mid-task loses nothing; a submission that keeps killing
its workers is reported as failed; a second run skips what is graded, --regrade grades again; a worker whose
tree differs refuses; a scheduler that does not answer is a clear error naming it. Loopback only."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import dask
import pytest
from distributed import LocalCluster

from instructor import cluster
from instructor.cluster import ClusterError, WorkerMismatch, grade_class, grade_task

#: What the fake grader's gradebook has: two exercises of one point each.
FAKE_GRADER = SimpleNamespace(
    exercises=[SimpleNamespace(id="ex1", points=1), SimpleNamespace(id="ex2", points=1)], answers={}
)


def fake_grade(path: Path) -> dict:
    """Grade a submission as the test wrote it: ``points.txt`` holds its points (0, 1 or 2); ``log.txt`` names
    a file where each grading appends the student's name; ``kill-once.txt`` names a marker file: the first
    grading creates it and kills its own worker; ``kill-always`` kills the worker every time; ``raise-once.txt``
    and ``raise-always`` make the grading raise (a fault of the grader) the first time or every time."""
    name = path.name.removesuffix(".zip")
    with zipfile.ZipFile(path) as zf:
        files = {n: zf.read(n).decode() for n in zf.namelist()}
    if "kill-always" in files:
        os.kill(os.getpid(), signal.SIGKILL)
    if "kill-once.txt" in files:
        marker = Path(files["kill-once.txt"])
        if not marker.exists():
            marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
    if "raise-always" in files:
        raise RuntimeError("the grader is broken")
    if "raise-once.txt" in files:
        marker = Path(files["raise-once.txt"])
        if not marker.exists():
            marker.write_text("raised")
            raise OSError("a passing fault")
    time.sleep(float(files.get("sleep.txt", "0")))
    points = int(files["points.txt"])
    with open(files["log.txt"], "a") as f:
        f.write(name + "\n")
    exercises = [
        {"id": f"ex{i}", "points": int(i <= points), "max": 1, "status": "passed" if i <= points else "failed"}
        for i in (1, 2)
    ]
    return {
        "student": name,
        "submission": str(path),
        "total": points,
        "max": 2,
        "exercises": exercises,
        "answers": {},
        "seconds": 0.0,
        "sharing": cluster._sharing_this_machine(),  # what the real grader would split the cores by
    }


def make_class(folder: Path, n: int, log: Path, extra: dict[str, dict[str, str]] | None = None) -> list[Path]:
    """``n`` submissions (student0.. ; even ones folders, odd ones .zip files), student i scoring i % 3."""
    subs = []
    for i in range(n):
        name = f"student{i}"
        files = {"points.txt": str(i % 3), "log.txt": str(log), "sleep.txt": "0.2", **(extra or {}).get(name, {})}
        if i % 2 == 0:
            sub = folder / name
            sub.mkdir(parents=True)
            for rel, text in files.items():
                (sub / rel).write_text(text)
        else:
            sub = folder / f"{name}.zip"
            with zipfile.ZipFile(sub, "w") as zf:
                for rel, text in files.items():
                    zf.writestr(rel, text)
        subs.append(sub)
    return subs


def graded(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def run(subs, out, **kw) -> list[dict]:
    """grade_class with the fake grader. Its tree (which the grading key hashes) is a small one beside ``out``
    that nothing edits during the test, unlike the course tree; its tasks read no tree, so workers do not check
    theirs."""
    tree = Path(out).parent / "fake-tree"
    (tree / "common").mkdir(parents=True, exist_ok=True)
    (tree / "common" / "layers.py").write_text("# the fake grader's tree\n")
    kw.setdefault("n_workers", 2)
    kw.setdefault("root", tree)
    kw.setdefault("check_machine", False)
    return grade_class(subs, out, grade_fn=fake_grade, grader=FAKE_GRADER, limits={}, progress=False, **kw)


def test_a_local_cluster_of_two_workers_grades_a_class(tmp_path):
    log = tmp_path / "log.txt"
    subs = make_class(tmp_path / "inbox", 6, log)
    out = tmp_path / "grades"
    reports = run(subs, out)

    assert [r["student"] for r in reports] == [f"student{i}" for i in range(6)]
    assert sorted(graded(log)) == sorted(r["student"] for r in reports)
    for i, sub in enumerate(subs):
        on_disk = json.loads((out / f"student{i}.json").read_text())
        assert on_disk["total"] == i % 3
        assert on_disk["submission"] == str(sub)
        assert len(on_disk["grading_key"]) == 64
        assert on_disk["graded_on"]["worker"].startswith("tcp://127.0.0.1:")
        assert on_disk["graded_on"]["seconds"] >= 0.2
    assert len({r["graded_on"]["worker"] for r in reports}) == 2  # both workers took submissions
    assert {r["sharing"] for r in reports} == {2}  # each grading knows it shares the machine with one other
    with open(out / "gradebook.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert rows["student2"]["exercises total"] == "2" and rows["student3"]["ex1"] == "0"
    assert not list(out.glob(".*partial"))


def test_a_second_run_skips_what_is_graded_and_regrade_grades_again(tmp_path):
    log = tmp_path / "log.txt"
    subs = make_class(tmp_path / "inbox", 4, log)
    out = tmp_path / "grades"
    start = time.perf_counter()
    run(subs, out)
    first = time.perf_counter() - start
    assert len(graded(log)) == 4

    start = time.perf_counter()
    again = run(subs, out)
    second = time.perf_counter() - start
    assert len(graded(log)) == 4, "nothing is graded twice"
    assert [r["total"] for r in again] == [0, 1, 2, 0]
    assert second < first / 4

    # a changed submission (its content, not its date) is graded again, and only it
    (subs[0] / "points.txt").write_text("2")
    again = run(subs, out)
    assert graded(log)[4:] == ["student0"] and again[0]["total"] == 2

    run(subs, out, regrade=True)
    assert sorted(graded(log)[5:]) == [f"student{i}" for i in range(4)]


def test_a_worker_killed_mid_task_loses_nothing(tmp_path):
    log = tmp_path / "log.txt"
    marker = tmp_path / "killed"
    subs = make_class(tmp_path / "inbox", 5, log, {"student1": {"kill-once.txt": str(marker)}})
    out = tmp_path / "grades"
    # a cluster started apart, used through its scheduler's address as a cluster of machines would be
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 2}),
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as lc,
    ):
        reports = run(subs, out, scheduler=lc.scheduler_address)
    assert marker.exists(), "the worker grading student1 was killed"
    # each graded once, or more when its result was still on the killed worker
    assert set(graded(log)) == {f"student{i}" for i in range(5)}
    assert [r["total"] for r in reports] == [0, 1, 2, 0, 1]
    assert all("grading_failed" not in r for r in reports)
    assert all((out / f"student{i}.json").exists() for i in range(5))


def test_a_submission_that_keeps_killing_its_workers_is_reported_failed(tmp_path):
    log = tmp_path / "log.txt"
    subs = make_class(tmp_path / "inbox", 3, log, {"student1": {"kill-always": ""}})
    out = tmp_path / "grades"
    reports = run(subs, out, allowed_failures=1)
    bad = json.loads((out / "student1.json").read_text())
    assert "took down its worker 2 time(s)" in bad["grading_failed"]
    assert [e["status"] for e in bad["exercises"]] == ["failed", "failed"]
    assert [r["total"] for r in reports] == [0, 0, 2]
    # (a result still on a dying worker is computed again: graded once or more, never lost)
    assert set(graded(log)) == {"student0", "student2"}
    with open(out / "gradebook.csv", newline="") as f:
        assert {r["student"] for r in csv.DictReader(f)} >= {"student0", "student1", "student2"}
    # the next run tries the failed one again (and only it)
    before = len(graded(log))
    again = run(subs, out, allowed_failures=0)
    assert "grading_failed" in again[1]
    assert len(graded(log)) == before


def test_a_grading_that_raises_is_tried_again_then_reported_failed(tmp_path):
    log = tmp_path / "log.txt"
    marker = tmp_path / "raised"
    extra = {"student0": {"raise-once.txt": str(marker)}, "student1": {"raise-always": ""}}
    subs = make_class(tmp_path / "inbox", 3, log, extra)
    reports = run(subs, tmp_path / "grades")
    assert marker.exists() and reports[0]["total"] == 0 and "grading_failed" not in reports[0]
    assert "the grader failed twice: RuntimeError: the grader is broken" in reports[1]["grading_failed"]
    assert sorted(graded(log)) == ["student0", "student2"]


def test_a_worker_with_another_tree_refuses_to_grade(tmp_path):
    fingerprint = dict(cluster.machine_fingerprint(), tree="0" * 64)
    with pytest.raises(WorkerMismatch, match="the course tree"):
        grade_task("x", b"", fingerprint, fake_grade)
    # through a cluster: the run stops with the reason instead of grading against another tree
    other = tmp_path / "other-tree"
    (other / "common").mkdir(parents=True)
    (other / "common" / "layers.py").write_text("# not the instructor's\n")
    subs = make_class(tmp_path / "inbox", 2, tmp_path / "log.txt")
    with pytest.raises(ClusterError, match="differs from the instructor's machine in: the course tree"):
        run(subs, tmp_path / "grades", root=other, n_workers=1, check_machine=True)


def test_a_worker_that_cannot_import_the_grading_code_is_a_clear_error(tmp_path, monkeypatch):
    # workers started before the grading function's module is importable: as a `dask worker` started outside
    # its clone's root
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as lc:
        (tmp_path / "only_here.py").write_text("def grade(path):\n    return {}\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        import only_here

        subs = make_class(tmp_path / "inbox", 1, tmp_path / "log.txt")
        with pytest.raises(ClusterError, match=r"worker\(s\) tcp://127\.0\.0\.1:\d+ cannot import only_here"):
            grade_class(subs, tmp_path / "grades", scheduler=lc.scheduler_address, grade_fn=only_here.grade)


def test_a_scheduler_that_does_not_answer_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    subs = make_class(tmp_path / "inbox", 1, tmp_path / "log.txt")
    start = time.perf_counter()
    with pytest.raises(ClusterError, match=f"no Dask scheduler answers at {address}"):
        run(subs, tmp_path / "grades", scheduler=address)
    assert time.perf_counter() - start < 20


def test_two_submissions_of_one_student_are_refused(tmp_path):
    subs = make_class(tmp_path / "inbox", 2, tmp_path / "log.txt")
    twin = tmp_path / "inbox" / "student0.zip"
    twin.write_bytes(subs[1].read_bytes())
    with pytest.raises(ClusterError, match="two submissions for student 'student0'"):
        run([subs[0], twin], tmp_path / "grades")


def test_what_the_key_depends_on(tmp_path):
    sub = tmp_path / "alice"
    (sub / "common").mkdir(parents=True)
    (sub / "common" / "layers.py").write_text("x = 1\n")
    before = cluster.submission_digest(sub)
    # caches, environments, version control and links are not the student's work
    for junk in (".git", ".venv", "common/__pycache__"):
        (sub / junk).mkdir(parents=True)
        (sub / junk / "f").write_text("junk")
    (sub / "outside").symlink_to("/etc/hostname")
    os.utime(sub / "common" / "layers.py", (0, 0))
    assert cluster.submission_digest(sub) == before
    with zipfile.ZipFile(__import__("io").BytesIO(cluster.payload(sub))) as zf:
        assert zf.namelist() == ["common/layers.py"]
    (sub / "common" / "layers.py").write_text("x = 2\n")
    assert cluster.submission_digest(sub) != before

    fp = cluster.machine_fingerprint()
    key = cluster.grading_key(before, fp, {"test_seconds": 30})
    assert key != cluster.grading_key(before, fp, {"test_seconds": 60})
    assert key != cluster.grading_key(before, dict(fp, tree="0" * 64), {"test_seconds": 30})


def test_running_a_notebook_does_not_change_the_tree_digest(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1"], "metadata": {}, "outputs": []}], "metadata": {}}
    (tmp_path / "assignment1").mkdir()
    path = tmp_path / "assignment1" / "A.ipynb"
    path.write_text(json.dumps(nb))
    before = cluster.tree_digest(tmp_path)
    nb["cells"][0].update(outputs=[{"output_type": "stream", "text": "1"}], execution_count=3)
    path.write_text(json.dumps(nb))
    assert cluster.tree_digest(tmp_path) == before
    nb["cells"][0]["source"] = ["x = 2"]
    path.write_text(json.dumps(nb))
    assert cluster.tree_digest(tmp_path) != before
