"""Grading a class on Dask: each submission one task, on this machine or on a cluster.

``grade_class`` runs each submission as a task on Dask distributed: a ``LocalCluster`` sized to this machine by
default (processes, one thread each), or a running cluster given by its scheduler address
(``--scheduler tcp://host:port``). A task carries the submission's content (the bytes of a .zip: a folder is
zipped here, without its caches, environments and datasets), so workers need no shared filesystem: only a clone
of this tree, set up with ``make setup``. A worker checks that its tree and main packages are the instructor's
before grading (else grades would silently depend on the machine), builds one ``Grader`` per process and returns
the report with where and how long it was graded (``graded_on``).

Nothing is lost:

- each report is written here, atomically, as soon as its task completes;
- a task whose worker dies (killed, out of memory, machine gone) is run again on another worker by Dask; a
  submission that takes down its worker more than ``allowed_failures`` times is reported as failed (a report
  with ``grading_failed``), not dropped;
- each report stores its grading key, a hash of the submission's content, the instructor tree's content (the
  files grading reads: ``common/``, ``tests/``, ``instructor/``, ``tools/``, the notebooks' cells,
  ``pyproject.toml``), the limits and the main packages' versions. A run started again skips every submission
  whose report has the same key, so an interrupted run grades only the rest; ``regrade=True`` grades all.

At the end the gradebook and the answer files are rebuilt from every report in the folder.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import io
import json
import logging
import os
import platform
import socket
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent

#: Folders of the instructor tree whose every file can change a grade.
TREE_FOLDERS = ("common", "tests", "instructor", "tools")
#: Single files of the tree that can change a grade (the pytest configuration).
TREE_FILES = ("pyproject.toml", "conftest.py")
#: Packages whose version can change a grade: a worker with other versions refuses to grade.
PACKAGES = ("numpy", "scipy", "torch", "scikit-learn", "pytest", "pytest-timeout", "nbval")
#: Left out of a submission folder before it is sent (nothing the grader reads) and of the tree's hash.
SKIPPED_DIRS = {".git", ".venv", "venv", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", "datasets", ".cache"}
SKIPPED_SUFFIXES = (".pyc", ".so", ".pyd")
#: The most a submission may weigh once zipped: tasks travel through the scheduler.
MAX_PAYLOAD_BYTES = 256 << 20


class ClusterError(RuntimeError):
    """The run cannot go on: no scheduler, a worker unlike the instructor's machine, a lost scheduler."""


class WorkerMismatch(RuntimeError):
    """Raised on a worker whose course tree or packages differ from the instructor's."""


# ---------------------------------------------------------------------------------------------------
# What a grade depends on: the tree, the environment, the submission
# ---------------------------------------------------------------------------------------------------


def _files(folder: Path, skip_suffixes: tuple[str, ...] = SKIPPED_SUFFIXES) -> Iterator[tuple[str, Path]]:
    """``(relative posix path, path)`` of the regular files under ``folder`` in a fixed order; symbolic links,
    caches, environments and datasets are left out."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIPPED_DIRS and not d.endswith(".egg-info") and not d.startswith(".")
        )
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file() or name.endswith(skip_suffixes):
                continue
            yield path.relative_to(folder).as_posix(), path


def _notebook_cells(data: bytes) -> bytes:
    """What of a notebook can change a grade: its cells' types, sources and grading metadata (outputs and
    execution counts left by running it are not)."""
    try:
        nb = json.loads(data)
        cells = [
            (c.get("cell_type"), "".join(c.get("source", "")), (c.get("metadata") or {}).get("nbgrader"))
            for c in nb["cells"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return data
    return json.dumps(cells, sort_keys=True).encode()


def tree_digest(root: Path = ROOT) -> str:
    """A hash of the instructor tree's files that grading reads (generated files such as the compiled Cython
    extension left out; notebooks by their cells only)."""
    h = hashlib.sha256()

    def add(rel: str, path: Path) -> None:
        data = path.read_bytes()
        if rel.endswith(".ipynb"):
            data = _notebook_cells(data)
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)

    for top in TREE_FOLDERS:
        if (root / top).is_dir():
            for rel, path in _files(root / top, SKIPPED_SUFFIXES + (".c",)):
                add(f"{top}/{rel}", path)
    for folder in sorted(root.glob("assignment*")):
        for rel, path in _files(folder):
            if rel.endswith((".ipynb", ".py")):
                add(f"{folder.name}/{rel}", path)
    for name in TREE_FILES:
        if (root / name).is_file():
            add(name, root / name)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine_fingerprint(root: Path = ROOT) -> dict:
    """The instructor tree's hash and the versions of Python and of the packages grading runs on. Computed
    afresh each time (in a fraction of a second): a long-lived worker may see its clone updated between runs."""
    return {"tree": tree_digest(Path(root)), "versions": _versions()}


def _limits_dict(limits) -> dict:
    """Limits given as a mapping or as a dataclass (the sandbox's ``Limits``), as a plain dict."""
    if dataclasses.is_dataclass(limits) and not isinstance(limits, type):
        return dataclasses.asdict(limits)
    return dict(limits or {})


def default_limits() -> dict:
    """The grader's limits (time per test, per run, per submission, memory ...) as its modules declare them:
    ``instructor.grade.LIMITS``, else the sandbox's default ``Limits``."""
    from instructor import grade

    found = getattr(grade, "LIMITS", None)
    if found is None:
        with contextlib.suppress(ImportError):
            from instructor.sandbox import Limits

            found = Limits()
    return _limits_dict(found)


def grading_key(submission: str, fingerprint: dict, limits: dict) -> str:
    """The key a report is stored under: same submission content, same tree, environment and limits."""
    blob = json.dumps({"submission": submission, "machine": fingerprint, "limits": limits}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def student_name(submission: Path) -> str:
    """The student's name, as the grader takes it: the file or folder name without ``.zip``."""
    return Path(submission).name.removesuffix(".zip")


def submission_digest(submission: Path) -> str:
    """A hash of a submission's content: a .zip's bytes, or a folder's files (paths and bytes) as they are sent."""
    submission = Path(submission)
    h = hashlib.sha256()
    if submission.is_dir():
        for rel, path in _files(submission):
            data = path.read_bytes()
            h.update(f"{rel}\0{len(data)}\0".encode())
            h.update(data)
    else:
        h.update(submission.read_bytes())
    return h.hexdigest()


def payload(submission: Path) -> bytes:
    """The bytes a task carries: a .zip as it is, a folder zipped (without ``.git``, environments, caches and
    datasets; symbolic links are not followed, so nothing outside the folder is sent)."""
    submission = Path(submission)
    if submission.is_dir():
        buf = io.BytesIO()
        # strict_timestamps=False: a file dated before 1980 (a copy that lost its dates) is sent dated 1980
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6, strict_timestamps=False) as zf:
            for rel, path in _files(submission):
                zf.write(path, rel)
        data = buf.getvalue()
    else:
        data = submission.read_bytes()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"{submission} weighs {len(data) >> 20} MB even without .git, environments, caches and datasets "
            f"(at most {MAX_PAYLOAD_BYTES >> 20} MB can be sent to a worker): keep only the course folder"
        )
    return data


# ---------------------------------------------------------------------------------------------------
# On a worker
# ---------------------------------------------------------------------------------------------------


def _sharing_this_machine() -> int:
    """How many gradings run side by side on this machine: the threads of every Dask worker on this host (the
    Grader splits the cores between them; each taking every core would oversubscribe them and time checks out)."""
    try:
        from distributed import get_client, get_worker

        host = urlsplit(get_worker().address).hostname
        threads = get_client().nthreads()
    except (ValueError, OSError):  # not in a Dask worker, or no answer from the scheduler
        return 1
    return max(1, sum(n for address, n in threads.items() if urlsplit(address).hostname == host))


@functools.cache
def _grader(root: str):
    """One Grader per worker process (building one reads the tree and maps which checks reach what)."""
    from instructor.grade import Grader

    return Grader(Path(root), workers=_sharing_this_machine(), verbose=False)


def grade_submission(path: Path) -> dict:
    """The default grading function of a task: the worker's own Grader on the unpacked submission, with its
    share of the machine's cores for its own test processes when it takes one (as ``Grader.grade_all`` gives
    each of the submissions it grades side by side)."""
    grader = _grader(str(ROOT))
    if hasattr(grader, "jobs") and "jobs" in inspect.signature(grader.grade).parameters:
        return grader.grade(path, jobs=grader.jobs)
    return grader.grade(path)


def _where() -> dict:
    try:
        from distributed import get_worker

        worker = get_worker()
        return {"worker": worker.address, "name": str(worker.name)}
    except ValueError:  # called outside a Dask worker
        return {"worker": "", "name": ""}


def grade_task(student: str, data: bytes, fingerprint: dict | None, grade_fn: Callable[[Path], dict]) -> dict:
    """One task: check this machine against the instructor's ``fingerprint`` (None: no check), grade ``data``
    (a .zip's bytes) with ``grade_fn`` and return its report with where and how long it was graded."""
    start = time.perf_counter()
    here = machine_fingerprint() if fingerprint is not None else None
    if here != fingerprint:
        where = _where()
        differs = [k for k in fingerprint["versions"] if fingerprint["versions"][k] != here["versions"].get(k)]
        if here["tree"] != fingerprint["tree"]:
            differs.insert(0, "the course tree (common/, tests/, instructor/, tools/, notebooks, pyproject.toml)")
        raise WorkerMismatch(
            f"worker {where['worker'] or socket.gethostname()} ({ROOT}) differs from the instructor's machine in: "
            f"{', '.join(differs)}. Give every worker a clone at the same commit, with the same local changes, "
            f"set up with `make setup`, and start it from that clone's .venv"
        )
    with tempfile.TemporaryDirectory(prefix="grade-task-") as tmp:
        path = Path(tmp) / f"{student}.zip"
        path.write_bytes(data)
        report = dict(grade_fn(path))
    report["graded_on"] = {
        **_where(),
        "host": socket.gethostname(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return report


# ---------------------------------------------------------------------------------------------------
# On the instructor's machine
# ---------------------------------------------------------------------------------------------------


def default_workers() -> int:
    """Workers of the local cluster: one per two cores (a grading runs the checks and the student's code side
    by side, two busy processes)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


def write_report(out: Path, report: dict) -> Path:
    """Write ``<out>/<student>.json`` atomically: a reader sees the old report or the new one, never half."""
    path = out / f"{report['student']}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "w") as f:
        f.write(json.dumps(report, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _done_report(out: Path, student: str, key: str) -> dict | None:
    """The report already in ``out`` for this key, unless its grading failed."""
    path = out / f"{student}.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(report, dict) and report.get("grading_key") == key and "grading_failed" not in report:
        return report
    return None


def _failed_report(student: str, submission: Path, key: str, why: str, grader) -> dict:
    """A report for a submission that could not be graded: every exercise failed with the reason, so it shows
    in the gradebook (and ``grading_failed`` makes the next run try it again)."""
    exercises = [
        {"id": ex.id, "points": 0, "max": ex.points, "status": "failed", "first_failure": why, "checks": 0}
        for ex in (grader.exercises if grader is not None else [])
    ]
    return {
        "student": student,
        "submission": str(submission),
        "total": 0,
        "max": sum(e["max"] for e in exercises),
        "exercises": exercises,
        "answers": dict.fromkeys(grader.answers if grader is not None else {}),
        "error": why,
        "grading_failed": why,
        "grading_key": key,
    }


def _connect(scheduler: str | None, n_workers: int | None, allowed_failures: int, timeout: float):
    """``(client, cluster or None, description)``: a client of the scheduler at ``scheduler``, or of a new
    local cluster of ``n_workers`` single-thread worker processes."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ClusterError(
                f"no Dask scheduler answers at {scheduler} (waited {timeout:g} s: {err}). Start one with "
                f"`.venv/bin/dask scheduler` and workers with `.venv/bin/dask worker {scheduler} --nthreads 1` "
                f"(see INSTRUCTORS.md), or leave out --scheduler to grade on this machine"
            ) from err
        return client, None, f"the cluster at {scheduler}"
    n = n_workers or default_workers()
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        )
    client = Client(cluster, set_as_default=False)
    return client, cluster, f"a local cluster of {n} worker{'s' if n > 1 else ''} (one thread each)"


def _check_workers_import(client, package: str) -> None:
    """Stop with the reason when a worker cannot import ``package`` of the course's code (started outside its
    clone's root or without it on PYTHONPATH): every task sent there would fail."""
    # a lambda travels by value (a function of this module would need the module on the worker to unpickle)
    found = client.run(lambda name: __import__("importlib.util").util.find_spec(name) is not None, package)
    missing = sorted(address for address, ok in found.items() if not ok)
    if missing:
        raise ClusterError(
            f"worker(s) {', '.join(missing)} cannot import {package}: start each worker from its clone's root with "
            f"the clone on PYTHONPATH (cd COURSE && PYTHONPATH=$PWD .venv/bin/dask worker ...; see INSTRUCTORS.md)"
        )


def _dashboard(client) -> str | None:
    """The dashboard's link when one runs: the scheduler serves its pages only where bokeh is installed (the
    course does not install it)."""
    with contextlib.suppress(Exception):
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        # a lambda travels by value: the scheduler need not import this module
        if client.run_on_scheduler(lambda: __import__("importlib.util").util.find_spec("bokeh") is not None):
            return client.dashboard_link
    return None


def rebuild_gradebook(out: Path, grader, root: Path = ROOT) -> int:
    """The gradebook and answer files from every report in ``out``; returns how many students they cover."""
    from instructor.gradebook import read_reports, write_answers, write_gradebook

    everyone = read_reports(out)
    write_gradebook(everyone, grader.exercises, grader.answers, out / "gradebook.csv")
    write_answers(everyone, grader.answers, root, out / "answers")
    return len(everyone)


def grade_class(
    submissions: list[Path],
    out: Path,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    regrade: bool = False,
    grade_fn: Callable[[Path], dict] = grade_submission,
    grader=None,
    root: Path = ROOT,
    limits=None,
    allowed_failures: int = 2,
    connect_timeout: float = 5.0,
    progress: bool = True,
    check_machine: bool = True,
) -> list[dict]:
    """Grade ``submissions`` (folders or .zip files) on Dask, writing ``<out>/<student>.json`` as each completes.

    ``scheduler``: the address of a running Dask scheduler (``tcp://host:port``); None starts a local cluster
    of ``n_workers`` single-thread processes (default: one per two cores).
    ``regrade``: grade again submissions whose report has the same grading key (else they are skipped).
    ``grade_fn``: what a task runs on the unpacked submission (a path to its .zip), the worker's Grader by
    default; it must be importable on the workers.
    ``grader``: something with ``exercises`` and ``answers`` (the client's Grader): failed gradings get a row of
    failed exercises, and the gradebook and answer files are rebuilt from every report in ``out`` at the end
    (also when interrupted); None leaves both to the caller.
    ``limits``: the grader's limits (a dict or the sandbox's ``Limits``), part of the key (default: as its
    modules declare them).
    ``allowed_failures``: how many times a submission may take down its worker before it is reported as failed
    (a local cluster only: a running scheduler has its own ``distributed.scheduler.allowed-failures``).
    ``check_machine``: each worker checks that its tree (``ROOT`` there) and packages are those of ``root`` here
    before grading; off only for grading functions that read no tree (the tests' fakes).

    Returns the reports of every submission in order: graded now, skipped (read back) or failed."""
    from distributed import KilledWorker, as_completed
    from tqdm.auto import tqdm

    submissions = [Path(s) for s in submissions]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names: dict[str, Path] = {}
    for sub in submissions:
        name = student_name(sub)
        if name in names:
            raise ClusterError(f"two submissions for student {name!r}: {names[name]} and {sub}; keep one")
        names[name] = sub

    fingerprint = machine_fingerprint(Path(root))
    limits = default_limits() if limits is None else _limits_dict(limits)
    reports: dict[str, dict] = {}
    keys: dict[str, str] = {}
    todo: list[Path] = []
    for sub in submissions:
        name = student_name(sub)
        try:
            keys[name] = grading_key(submission_digest(sub), fingerprint, limits)
        except OSError:
            keys[name] = ""  # it fails when its task is made, with the reason
        done = None if regrade or not keys[name] else _done_report(out, name, keys[name])
        if done is not None:
            reports[name] = done
        else:
            todo.append(sub)
    skipped = len(reports)
    failed = 0
    if skipped:
        print(
            f"{skipped} of {len(submissions)} submissions already graded (same content, instructor tree and "
            f"limits): skipped; --regrade grades them again",
            flush=True,
        )
    start = time.perf_counter()
    if not todo:
        if grader is not None:
            rebuild_gradebook(out, grader, root)
        return [reports[student_name(s)] for s in submissions]

    client, cluster, where = _connect(scheduler, n_workers, allowed_failures, connect_timeout)
    futures = {}
    bar = None
    interrupted = False
    try:
        print(f"grading {len(todo)} submission(s) on {where}", flush=True)
        link = _dashboard(client)
        if link:
            print(f"Dask dashboard: {link}", flush=True)
        # how many worker deaths a task survives: the scheduler's own setting (a running cluster has its own)
        with contextlib.suppress(Exception):
            allowed_failures = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        if grade_fn.__module__ and grade_fn.__module__ != "__main__":
            _check_workers_import(client, grade_fn.__module__.split(".")[0])
        if not client.scheduler_info().get("workers"):
            print(
                f"no worker has joined the scheduler yet: start some with `.venv/bin/dask worker "
                f"{client.scheduler.address} --nthreads 1` (waiting)",
                flush=True,
            )
        bar = tqdm(total=len(todo), unit="submission", desc="graded", disable=not progress, dynamic_ncols=True)
        bar.set_postfix(failed=failed)
        waiting = iter(todo)
        stream = as_completed(loop=client.loop)

        def top_up() -> None:
            # a few tasks per worker thread in flight: the scheduler holds every queued submission's bytes
            window = max(4, 2 * sum(client.nthreads().values()))
            while len(futures) < window:
                sub = next(waiting, None)
                if sub is None:
                    return
                name = student_name(sub)
                try:
                    data = payload(sub)
                except (OSError, ValueError) as err:
                    fail(sub, f"cannot send the submission: {err}")
                    continue
                # retries: a grading that raises (a fault of the grader, not of the submission, which gets a
                # report whatever it holds) is tried once more before it is reported as failed
                fut = client.submit(
                    grade_task,
                    name,
                    data,
                    fingerprint if check_machine else None,
                    grade_fn,
                    key=f"grade-{name}-{uuid.uuid4().hex[:8]}",
                    retries=1,
                )
                futures[fut] = sub
                stream.add(fut)

        def fail(sub: Path, why: str) -> None:
            nonlocal failed
            name = student_name(sub)
            reports[name] = _failed_report(name, sub, keys[name], why, grader)
            write_report(out, reports[name])
            failed += 1
            bar.set_postfix(failed=failed)
            bar.update(1)
            bar.write(f"failed: {name}: {why}")

        top_up()
        for fut in stream:
            sub = futures.pop(fut)
            name = student_name(sub)
            if fut.status == "finished":
                report = fut.result()
                report["student"] = name
                report["submission"] = str(sub)
                report["grading_key"] = keys[name]
                reports[name] = report
                write_report(out, report)
                bar.update(1)
            elif fut.status == "error":
                err = fut.exception()
                if isinstance(err, WorkerMismatch):
                    raise ClusterError(str(err))
                if isinstance(err, ModuleNotFoundError):  # a worker that joined later, started outside its clone
                    raise ClusterError(
                        f"a worker cannot import the course's code ({err}): start each worker from its clone's "
                        f"root with the clone on PYTHONPATH (see INSTRUCTORS.md)"
                    )
                if isinstance(err, KilledWorker):
                    why = (
                        f"its grading took down its worker {allowed_failures + 1} time(s) (a crash, memory "
                        f"exhausted, or the machine went away); grade it alone to see why: "
                        f"make grade SUBMISSION={sub}"
                    )
                else:
                    why = f"the grader failed twice: {type(err).__name__}: {err}"
                fail(sub, why)
            else:  # cancelled: the scheduler is gone
                raise ClusterError(
                    f"lost the Dask scheduler ({where}); the reports written so far are kept: run the same "
                    f"command again to grade the rest"
                )
            fut.release()
            top_up()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if bar is not None:
            bar.close()
        for fut in futures:
            fut.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
        graded = sum(1 for s in todo if student_name(s) in reports)
        seconds = time.perf_counter() - start
        print(
            f"{graded - failed} of {len(todo)} submission(s) graded, {failed} failed, in {seconds:.0f} s"
            + (f", {skipped} skipped" if skipped else "")
            + ("; interrupted: run the same command again to grade the rest" if interrupted else ""),
            flush=True,
        )
        if grader is not None:
            rebuild_gradebook(out, grader, root)
    return [reports[student_name(s)] for s in submissions]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m instructor.grade --class`` that choose where and what to grade."""
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on the Dask cluster whose scheduler is at ADDRESS (tcp://host:port); default: a local "
        "cluster on this machine, one worker per two cores",
    )
    parser.add_argument(
        "--regrade",
        action="store_true",
        help="grade again the submissions already graded with the same content, instructor tree and limits "
        "(skipped otherwise)",
    )
