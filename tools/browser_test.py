"""The notebooks as a student meets them: JupyterLab in headless Chromium, Run > Run All Cells, then a look.

``python -m tools.browser_test [NOTEBOOK...]`` (``make test-browser``) starts JupyterLab on 127.0.0.1 with a
random token and throw-away settings (autosave off), opens each notebook (default: all of them) in a fresh
browser page, runs all cells from the Run menu and fails a notebook on any of:
- stderr or traceback output, widget fallback text ("IProgress not found", "Error displaying widget", ...),
  an image that did not load;
- a dialog or a notification toast, a JavaScript error in the page;
- a code cell left unrun (Run All stops at the first error), or a run longer than ``--timeout``;
- a save right after opening that changes the notebook, or (with the git filter installed:
  ``python -m tools.notebook_filter install``) a save after the run that git would see as a change; the
  file is put back as it was afterwards.
It saves a screenshot per notebook in ``.browser-test/screenshots/`` and reports the time per notebook.
Notebooks run in quick mode (``COURSE_QUICK=1`` in the server's environment, so in every kernel) unless
``--full``. Before the notebooks it runs scratch notebooks that must fail (a cell that raises, stderr,
widget fallback text) and one that must pass, so a green run means the checks can see a failure.

Chromium comes from the system (``CHROMIUM=/path`` or ``chromium`` on PATH), driven by Playwright; no
browser is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / ".browser-test"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Text that means a widget did not render and the student sees a fallback instead of a progress bar.
WIDGET_FALLBACKS = ["IProgress not found", "Error displaying widget", "Loading widget...", "HBox(children="]
# Throw-away user settings: never save behind the test's back, and keep every cell in the page.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# Reads the page: every code cell's prompt, source and outputs, open dialogs and toasts, the kernel status.
PAGE_STATE_JS = """(fallbacks) => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const cells = panel ? [...panel.querySelectorAll('.jp-Cell.jp-CodeCell')] : [];
  const text = (el) => (el ? el.innerText || el.textContent || '' : '').trim();
  const state = {cells: [], dialogs: [], toasts: [], status: null, open: !!panel};
  cells.forEach((cell, i) => {
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')];
    const stderr = outputs.filter(o => o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr');
    const all = outputs.map(text).join('\\n');
    const broken = [...cell.querySelectorAll('.jp-OutputArea-output img')]
      .filter(img => !img.complete || img.naturalWidth === 0).length;
    state.cells.push({
      index: i,
      prompt: text(cell.querySelector('.jp-InputPrompt')),
      source: text(cell.querySelector('.cm-content')),
      stderr: stderr.map(text).join('\\n').slice(0, 400),
      fallback: fallbacks.filter(f => all.includes(f)),
      broken_images: broken,
      images: cell.querySelectorAll('.jp-OutputArea-output img').length,
    });
  });
  state.dialogs = [...document.querySelectorAll('.jp-Dialog')].map(text);
  state.toasts = [...document.querySelectorAll('.Toastify__toast')].map(text);
  const indicator = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
  state.status = indicator ? indicator.getAttribute('data-status') : null;
  return state;
}"""


@dataclass
class Result:
    notebook: str
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    screenshot: str = ""
    cells: int = 0
    images: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def find_chromium() -> str | None:
    """The Chromium (or Chrome) to drive: ``$CHROMIUM``, else the first one on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyterlab(workdir: Path, full: bool):
    """A JupyterLab server on 127.0.0.1 serving the repository; yields (base_url, token)."""
    port, token = free_port(), secrets.token_hex(16)
    settings = workdir / "user-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "COURSE_QUICK", "JUPYTER_CONFIG_DIR")}
    if not full:
        env["COURSE_QUICK"] = "1"
    env["JUPYTER_CONFIG_DIR"] = str(workdir / "config")  # no personal Jupyter config changes the test
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
        "--ContentsManager.allow_hidden=True",
    ]  # the scratch notebooks live in .browser-test/
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root
    log_path = workdir / "jupyterlab.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base, token, server, log_path)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def wait_for_server(base: str, token: str, server: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"JupyterLab exited at start; its log:\n{log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"JupyterLab did not answer within {timeout:.0f} s; its log: {log_path}")


def api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}?token={token}", method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def shut_down_kernels(base: str, token: str) -> None:
    for session in api(base, token, "/api/sessions"):
        api(base, token, f"/api/sessions/{session['id']}", method="DELETE")


def git_filter_installed() -> bool:
    done = subprocess.run(
        ["git", "config", "filter.nbstripout.clean"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and bool(done.stdout.strip())


def git_blob(path: Path) -> str:
    """The object id git would store for the file now (clean filter applied)."""
    done = subprocess.run(
        ["git", "hash-object", "--", str(path.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def git_unchanged(path: Path) -> bool:
    done = subprocess.run(["git", "diff", "--quiet", "--", str(path.relative_to(ROOT))], cwd=ROOT, check=False)
    return done.returncode == 0


def run_all(page, timeout: float) -> tuple[dict, list[str]]:
    """Click Run > Run All Cells and wait until no cell is queued or running; returns the final state."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator('li[data-command="runmenu:run-all"]').click()
    deadline, quiet = time.monotonic() + timeout, 0
    while True:
        time.sleep(1)
        state = page.evaluate(PAGE_STATE_JS, WIDGET_FALLBACKS)
        if state["dialogs"]:
            return state, []
        if state["status"] == "dead":
            return state, ["the kernel died"]
        busy = any(c["prompt"] == "[*]:" for c in state["cells"]) or state["status"] not in ("idle", None)
        quiet = 0 if busy else quiet + 1
        if quiet >= 3:  # idle for three polls in a row: the queue is really empty
            return state, []
        if time.monotonic() > deadline:
            return state, [f"still running after {timeout:.0f} s (raise --timeout for full mode)"]


def problems_in(state: dict, page_errors: list[str]) -> list[str]:
    found = []
    for cell in state["cells"]:
        where = f"code cell {cell['index'] + 1}"
        if cell["stderr"]:
            found.append(f"{where}: stderr/traceback output: {cell['stderr'][:300]!r}")
        for text in cell["fallback"]:
            found.append(f"{where}: widget fallback text {text!r}")
        if cell["broken_images"]:
            found.append(f"{where}: {cell['broken_images']} image(s) did not load")
        if cell["source"] and not (cell["prompt"].startswith("[") and cell["prompt"][1:-2].isdigit()):
            found.append(f"{where}: not run (prompt {cell['prompt']!r})")
    found += [f"dialog: {text[:200]!r}" for text in state["dialogs"]]
    found += [f"notification: {text[:200]!r}" for text in state["toasts"]]
    found += [f"JavaScript error in the page: {text[:200]}" for text in page_errors]
    return found


def save(page, path: Path) -> bool:
    """Save the notebook as a student would (Ctrl+S); False when the file was not written within a minute."""
    mtime = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 60
    while path.stat().st_mtime_ns == mtime:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    time.sleep(1)  # let the write finish
    return True


def open_save_problems(page, path: Path, original: bytes) -> list[str]:
    """Opening a notebook and saving it before running anything must not change its file."""
    if not save(page, path):
        return ["save: Ctrl+S did not write the notebook within 60 s"]
    saved = path.read_bytes()
    if saved == original:
        return []
    before, after = json.loads(original), json.loads(saved)
    rel = path.relative_to(ROOT)
    if nbformat.reads(original, as_version=4) == nbformat.reads(saved, as_version=4):
        return [
            (
                "save: the file is not laid out as JupyterLab writes it, so opening and saving it changes it; "
                f"rewrite it with `.venv/bin/python -m tools.notebook_filter strip {rel}`"
            )
        ]
    what = [key for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    detail = f" (metadata now {json.dumps(after['metadata'])})" if "metadata" in what else ""
    return [f"save: opening and saving the notebook changed its {', '.join(what)}{detail}"]


def run_save_problems(page, path: Path, blob_before: str, clean_before: bool) -> list[str]:
    """After the run, a save must leave nothing for git to see (the git filter drops outputs)."""
    if not save(page, path):
        return ["save: Ctrl+S did not write the notebook within 60 s"]
    rel = path.relative_to(ROOT)
    if git_blob(path) != blob_before:
        return [
            (
                "save: git sees a change after open, run and save (outputs or metadata not stripped); "
                f"save it in JupyterLab and look at `git diff {rel}`"
            )
        ]
    if clean_before and not git_unchanged(path):
        return [f"save: `git diff {rel}` is not empty after open, run and save"]
    return []


def test_notebook(
    browser, base: str, token: str, path: Path, timeout: float, save_check: bool = False, git_check: bool = False
) -> Result:
    rel = path.relative_to(ROOT).as_posix()
    result = Result(rel)
    original = path.read_bytes()
    blob_before = git_blob(path) if git_check else ""
    clean_before = git_unchanged(path) if git_check else False
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        workspace = f"browser-test-{secrets.token_hex(4)}"  # a fresh workspace: no layout restored
        page.goto(f"{base}/lab/workspaces/{workspace}/tree/{rel}?token={token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell, .jp-Dialog", timeout=120_000)
        if page.locator(".jp-Dialog").count():
            raise RuntimeError("a dialog instead of the notebook: " + page.locator(".jp-Dialog").first.inner_text())
        page.wait_for_function(
            "() => { const i = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
            ".jp-Notebook-ExecutionIndicator'); return i && i.getAttribute('data-status') === 'idle'; }",
            timeout=120_000,
        )
        page.wait_for_timeout(2000)  # notifications shown at start would be up by now
        if save_check:
            result.problems += open_save_problems(page, path, original)
        start = time.monotonic()
        state, timeouts = run_all(page, timeout)
        result.seconds = time.monotonic() - start
        page.wait_for_timeout(1000)  # images and widgets finish rendering
        state = page.evaluate(PAGE_STATE_JS, WIDGET_FALLBACKS)
        result.cells = len(state["cells"])
        result.images = sum(c["images"] for c in state["cells"])
        result.problems += timeouts + problems_in(state, page_errors)
        if not state["cells"]:
            result.problems.append("no code cell found in the page")
        result.screenshot = screenshot(page, rel, state)
        if git_check and not result.problems:
            result.problems += run_save_problems(page, path, blob_before, clean_before)
    except (PlaywrightError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
        # a page that never loaded is a failure of this notebook, not of the whole run
        result.problems.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
        result.screenshot = screenshot(page, rel, None)
    finally:
        context.close()
        if path.read_bytes() != original:
            path.write_bytes(original)  # the saved run goes; the work tree is as it was
        shut_down_kernels(base, token)
    return result


def screenshot(page, rel: str, state: dict | None) -> str:
    """A screenshot at the first cell with a problem (else the last cell)."""
    target = OUT_DIR / "screenshots" / (rel.replace("/", "__").removesuffix(".ipynb") + ".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if state and state["cells"]:
            bad = [c["index"] for c in state["cells"] if c["stderr"] or c["fallback"] or c["broken_images"]]
            index = bad[0] if bad else len(state["cells"]) - 1
            page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").nth(index).scroll_into_view_if_needed()
        page.screenshot(path=str(target))
    except PlaywrightError:
        return ""
    return str(target.relative_to(ROOT))


SCRATCH = {  # name: (cells, what the checks must say); empty expectation = must pass
    "passes": (["x = 1 + 1\nprint(x)", "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass"], []),
    "raises": (
        ["print('before')", "raise ValueError('a deliberate error')", "print('never run')"],
        ["stderr/traceback", "not run"],
    ),
    "stderr": (["import sys\nsys.stderr.write('a warning\\n')"], ["stderr/traceback"]),
    "widget_fallback": (["print('IProgress not found. Please update jupyter and ipywidgets.')"], ["widget fallback"]),
}


def write_scratch(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (sources, _) in SCRATCH.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
        nbformat.write(nb, folder / f"{name}.ipynb")
        paths.append(folder / f"{name}.ipynb")
    return paths


def self_test(browser, base: str, token: str) -> list[str]:
    """Run the scratch notebooks; returns one line per scratch notebook the checks got wrong."""
    wrong = []
    for path in write_scratch(OUT_DIR / "self-test"):
        expected = SCRATCH[path.stem][1]
        result = test_notebook(browser, base, token, path, timeout=120)
        said = "; ".join(result.problems)
        missed = [phrase for phrase in expected if phrase not in said]
        if (not expected and result.problems) or missed:
            wrong.append(f"self-test {path.stem}: expected {expected or 'a pass'}, the checks said: {said or 'pass'}")
        print(
            f"self-test {path.stem:16s} {'WRONG' if wrong and path.stem in wrong[-1] else 'ok'}: {said or 'passes'}",
            flush=True,
        )
    return wrong


def notebooks_from(args: list[str]) -> list[Path]:
    if not args:
        return sorted(ROOT.glob("assignment*/*.ipynb"))
    paths = []
    for arg in args:
        path = (Path.cwd() / arg).resolve()
        if not path.is_file() or path.suffix != ".ipynb":
            raise SystemExit(f"{arg}: no such notebook (give a path like assignment1/Perceptron.ipynb)")
        if ROOT not in path.parents:
            raise SystemExit(f"{arg}: the notebook must be inside the repository ({ROOT})")
        paths.append(path)
    return paths


def launch_browser(playwright):
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit(
            "No Chromium found for the browser test. Install it with the system's package manager "
            "(Debian/Ubuntu: `sudo apt-get install chromium`; macOS: `brew install --cask chromium`) "
            "or point CHROMIUM=/path/to/chromium at one."
        )
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)


def report(results: list[Result]) -> None:
    print(f"\n{'notebook':48s} {'result':6s} {'run (s)':>8s} {'cells':>6s} {'images':>6s}")
    for r in results:
        print(f"{r.notebook:48s} {'ok' if r.ok else 'FAIL':6s} {r.seconds:8.1f} {r.cells:6d} {r.images:6d}")
    print(f"{'total':48s} {'':6s} {sum(r.seconds for r in results):8.1f}")
    for r in results:
        for problem in r.problems:
            print(f"FAIL {r.notebook}: {problem}")
        if not r.ok:
            print(f"     screenshot: {r.screenshot}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to test (default: all of them)")
    parser.add_argument("--full", action="store_true", help="full mode (default: COURSE_QUICK=1)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per notebook (default 1200)")
    parser.add_argument("--no-self-test", action="store_true", help="skip the scratch notebooks that must fail")
    parser.add_argument("--self-test-only", action="store_true", help="run only the scratch notebooks")
    parser.add_argument(
        "--no-save-check", action="store_true", help="do not save the notebook (after opening it, and after the run)"
    )
    args = parser.parse_args(argv)
    notebooks = [] if args.self_test_only else notebooks_from(args.notebooks)
    save_check = not args.no_save_check
    git_check = save_check and git_filter_installed()
    if save_check and not git_check:
        print(
            "browser test: the git filter is not installed here (`python -m tools.notebook_filter install`), "
            "so whether git sees a run notebook as changed is not checked"
        )
    OUT_DIR.mkdir(exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="browser-test-") as tmp,
        jupyterlab(Path(tmp), args.full) as (base, token),
        sync_playwright() as playwright,
    ):
        browser = launch_browser(playwright)
        wrong = [] if args.no_self_test else self_test(browser, base, token)
        results = []
        for path in notebooks:
            print(f"running {path.relative_to(ROOT)} ...", flush=True)
            results.append(test_notebook(browser, base, token, path, args.timeout, save_check, git_check))
            print(f"  {'ok' if results[-1].ok else 'FAIL'} in {results[-1].seconds:.1f} s", flush=True)
        browser.close()
    if results:
        report(results)
    for line in wrong:
        print(f"FAIL {line}")
    passed = sum(r.ok for r in results) + (0 if args.no_self_test else len(SCRATCH) - len(wrong))
    failed = sum(not r.ok for r in results) + len(wrong)
    print(f"browser: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
