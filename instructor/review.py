"""Review flags: a static read of a submission's code for constructs that honest solutions of this course never
need (patching libraries, reaching frames, globals, builtins or the module system, running processes or code built
at run time, touching files, the network, the interpreter's own paths ...).

Nothing is imported or run: each block body, and each import and helper a student adds to a library file, is parsed
with :mod:`ast` and walked. Names are resolved through the imports in force where the code runs (the instructor's
file or notebook, the student's added imports, the block's own), so ``np.allclose = ...`` is read as assigning
``numpy.allclose`` and ``sp.run(...)`` after ``import subprocess as sp`` as calling ``subprocess.run``.

Flags are for the instructor to read; they never change points. Entry points: :func:`review_work` (a whole
submission), :func:`render_flags` (the report) and :func:`summary_cell` (one gradebook cell).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from instructor.markers import BEGIN, END, STUDENT_BEGIN, cell_source, nbgrader_meta, parse_python, read_notebook

if TYPE_CHECKING:
    from instructor.submission import Work

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------
# What is flagged, and why
# ---------------------------------------------------------------------------------------------------

PATCH_CHECKED = "patching a library the checks use"
PATCH_COURSE = "patching the course library"
PATCH_MODULE = "patching an imported module"
PATCH_CLASS = "changes a class for every instance"
NATIVE = "native code can change anything in the process"
PROCESS = "starts or signals processes"
STOP = "ends the process"
AT_EXIT = "runs code when the interpreter exits or an object is collected"
MODULES = "reaches or changes loaded modules"
IMPORT = "imports by computed name"
DYNAMIC = "runs code built at run time"
CODE = "reaches code objects, globals or builtins"
FILES = "reads or writes files"
PATHS = "locates the installation, the working folder or the instructor's files"
ENVIRON = "reads or changes environment variables"
FRAMES = "inspects the call stack (the checks' frames and variables)"
GC = "reaches other objects through the garbage collector"
COMPUTED = "attribute access by computed name"
BACKGROUND = "runs code outside the call (signals, threads, timers)"
NETWORK = "network access"
DUNDER = "reaches object internals through dunder attributes"
PRETEND = "an object that can pretend to pass comparisons or type checks"
REBIND = "rebinds a name defined outside the block"
ESCAPE = "code placed outside its function runs when the file is imported, or changes the class around it"
TESTS = "reaches the test framework"
SHELL = "runs shell commands or IPython magics"
OS = "operating system access"
INTERPRETER = "changes or reads interpreter internals"
UNREADABLE = "hides what it does from this review; it may not compile either"
STAR = "imports every name of a module (the names cannot be checked)"
GLOBALS = "reaches the module's globals"

#: Libraries whose functions the checks call: patching them can fake a verdict.
CHECKED_LIBRARIES = ("numpy", "torch", "scipy", "pytest", "_pytest", "math", "builtins", "tests", "tools")


@dataclass(frozen=True)
class _Rule:
    pattern: str  # dotted name (fnmatch wildcards allowed); matches that name and everything under it
    reason: str | None  # None: allowed (stops the search, for harmless names under a flagged module)
    on_import: bool = True  # importing the module is itself flagged (not for os/sys, flagged by use)
    file_arg: tuple[int, str] | None = None  # loaders/savers: flagged unless that argument is an in-memory buffer


def _words(text: str) -> list[str]:
    return text.split()


def _rules(names: str, reason: str | None, on_import: bool = True) -> list[_Rule]:
    return [_Rule(n, reason, on_import) for n in _words(names)]


_RULES = [
    *_rules("ctypes _ctypes cffi mmap numpy.ctypeslib numpy.f2py torch.utils.cpp_extension", NATIVE),
    *_rules("torch.ops.load_library", NATIVE),
    *_rules("subprocess pty multiprocessing torch.multiprocessing resource", PROCESS),
    *_rules("os.system os.popen os.exec* os.spawn* os.fork* os.posix_spawn* os.kill* os.set* os.wait*", PROCESS, False),
    *_rules("os._exit os.abort", STOP, False),
    *_rules("signal threading _thread sched concurrent asyncio", BACKGROUND),
    *_rules("atexit weakref.finalize", AT_EXIT),
    *_rules("socket ssl urllib urllib3 http requests httpx aiohttp ftplib smtplib telnetlib xmlrpc", NETWORK),
    *_rules("webbrowser torch.hub", NETWORK),
    *_rules("builtins __builtin__", CODE),
    _Rule("types", CODE, False),
    _Rule("types.SimpleNamespace", None),
    *_rules("importlib imp pkgutil zipimport", IMPORT),
    *_rules("runpy code codeop", DYNAMIC),
    *_rules("site sysconfig", PATHS),
    _Rule("copyreg", DUNDER),
    *_rules("inspect traceback pdb bdb dis", FRAMES),
    _Rule("gc", GC),
    # sys and os: flagged by use (importing them alone is harmless), a few harmless names allowed
    _Rule("sys", INTERPRETER, False),
    *_rules("sys.float_info sys.int_info sys.maxsize sys.version_info sys.version sys.byteorder", None),
    *_rules("sys.stdout sys.stderr sys.getsizeof", None),
    *_rules("sys.modules sys.meta_path sys.path_hooks sys.path_importer_cache", MODULES, False),
    *_rules("sys._getframe sys._current_frames sys.settrace sys.setprofile sys.exc_info sys.exception", FRAMES, False),
    *_rules("sys.last_traceback", FRAMES, False),
    _Rule("sys.exit", STOP, False),
    *_rules("sys.prefix sys.base_prefix sys.exec_prefix sys.base_exec_prefix sys.executable", PATHS, False),
    *_rules("sys.path sys.argv sys.orig_argv", PATHS, False),
    _Rule("os", OS, False),
    *_rules("os.environ* os.getenv* os.putenv os.unsetenv", ENVIRON, False),
    *_rules("os.getcwd* os.chdir os.path", PATHS, False),
    *_rules("os.open os.fdopen os.read os.write os.remove os.unlink os.rename os.replace os.listdir", FILES, False),
    *_rules("os.scandir os.walk os.mkdir os.makedirs os.rmdir os.removedirs os.symlink os.link", FILES, False),
    *_rules("posix nt pwd grp fcntl termios getpass platform", OS),
    *_rules("pathlib shutil tempfile glob fileinput zipfile tarfile h5py shelve dbm sqlite3 imageio joblib", FILES),
    *_rules("io.open io.FileIO codecs.open PIL.Image.open pandas.read_*", FILES),
    *_rules("pickle _pickle marshal dill cloudpickle", FILES + " (unpickling runs code)"),
    # loaders and savers: harmless on an in-memory buffer
    *(
        _Rule(name, FILES, False, (position, keyword))
        for name, position, keyword in (
            ("numpy.load", 0, "file"),
            ("numpy.loadtxt", 0, "fname"),
            ("numpy.genfromtxt", 0, "fname"),
            ("numpy.fromfile", 0, "file"),
            ("numpy.save", 0, "file"),
            ("numpy.savez*", 0, "file"),
            ("numpy.savetxt", 0, "fname"),
            ("torch.load", 0, "f"),
            ("torch.save", 1, "f"),
            ("torch.jit.load", 0, "f"),
            ("torch.jit.save", 1, "f"),
        )
    ),
    *_rules("numpy.memmap numpy.lib.format.open_memmap torch.from_file matplotlib.pyplot.imread", FILES, False),
    *_rules("pytest _pytest pluggy unittest mock doctest", TESTS),
]

#: Builtins referred to by name (any use, not only calls).
_BUILTINS = {
    **dict.fromkeys(("exec", "eval", "compile"), DYNAMIC),
    **dict.fromkeys(("exit", "quit", "SystemExit", "KeyboardInterrupt"), STOP),
    **dict.fromkeys(("__file__", "__cached__"), PATHS),
    **dict.fromkeys(("__loader__", "__spec__"), MODULES),
    "__import__": IMPORT,
    "open": FILES,
    "globals": GLOBALS,
    "breakpoint": FRAMES,
    "__builtins__": CODE,
    "get_ipython": SHELL,
}
_ATTRIBUTE_BUILTINS = ("getattr", "setattr", "delattr")

#: Dunder attributes that reach object internals (reading any of them is flagged; assigning any dunder is).
_DUNDERS = {
    **dict.fromkeys(
        _words(
            "__class__ __subclasses__ __mro__ __bases__ __base__ __reduce__ __reduce_ex__ __getstate__ __setstate__"
            " __dict__ __module__ __getattribute__ __setattr__ __delattr__ __init_subclass__ __set_name__ __self__"
            " __objclass__ __wrapped__"
        ),
        DUNDER,
    ),
    **dict.fromkeys(_words("__code__ __globals__ __builtins__ __closure__ __func__ __defaults__ __kwdefaults__"), CODE),
    **dict.fromkeys(("__loader__", "__spec__"), MODULES),
    **dict.fromkeys(("__file__", "__path__"), PATHS),
    "__import__": IMPORT,
    "__traceback__": FRAMES,
    "__del__": AT_EXIT,
}

#: Methods whose definition makes an object able to fake a check, or run code at odd times.
_DUNDER_METHODS = {
    **dict.fromkeys(
        _words(
            "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __bool__ __array__ __array_ufunc__ __array_function__"
            " __array_interface__ __array_priority__ __torch_function__ __torch_dispatch__ __instancecheck__"
            " __subclasscheck__ __getattr__ __getattribute__"
        ),
        PRETEND,
    ),
    **dict.fromkeys(
        _words("__init_subclass__ __set_name__ __class_getitem__ __reduce__ __reduce_ex__ __setstate__ __getstate__"),
        DUNDER,
    ),
    "__del__": AT_EXIT,
}

#: Attributes of frames, tracebacks, generators and code objects.
_FRAME_ATTRIBUTES = set(
    _words(
        "f_back f_globals f_locals f_code f_builtins f_trace tb_frame tb_next gi_frame gi_code cr_frame cr_code"
        " ag_frame co_code co_consts co_names co_varnames co_filename func_globals func_code"
    )
)

#: Methods (of paths, arrays, images ...) that touch the file system, whatever they are called on.
_FILE_METHODS = {
    **dict.fromkeys(
        _words(
            "read_text write_text read_bytes write_bytes open iterdir glob rglob unlink rmdir mkdir touch symlink_to"
            " hardlink_to tofile"
        ),
        FILES,
    ),
    **dict.fromkeys(("expanduser", "home", "cwd"), PATHS),
}

#: Text in string literals that points at the machine, the installation or the instructor's files.
_PATH_TEXT = re.compile(
    r"/proc\b|/dev/|/etc/|/sys/|/home\b|/root\b|/tmp\b|/usr/|\.venv|site-packages|dist-packages"
    r"|(?:^|/)\.\.(?:/|$)|~/|BEGIN SOLUTION|END SOLUTION|grades/|\w\.(?:py|ipynb|pyc)\b"
)

#: IPython line magics harmless in a solution (their code argument is read like the rest).
_HARMLESS_MAGICS = {"time", "timeit", "matplotlib"}

#: Module names the course's files import under these aliases, for code that uses them without an import.
_DEFAULT_ALIASES = {"np": "numpy", "nn": "torch.nn", "F": "torch.nn.functional", "plt": "matplotlib.pyplot"}

#: Modules recognised by name even where no import binds them.
_KNOWN_UNIMPORTED = set(
    _words(
        "os sys builtins ctypes subprocess importlib inspect gc atexit signal socket threading pytest numpy torch io"
        " pathlib shutil pickle"
    )
)

_IN_MEMORY = {"io.BytesIO", "io.StringIO"}


def _rule_for(name: str) -> _Rule | None:
    """The rule for a dotted name: the one matching its longest prefix (``os.path.join`` -> ``os.path``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        for rule in _RULES:
            if fnmatchcase(prefix, rule.pattern):
                return rule
    return None


# ---------------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One construct worth a look in a submission."""

    file: str  # the file it is in, relative to the course root
    part: str  # the function of the block, the cell's grade_id, or the added helper ("added imports")
    line: int  # 1-based: in the submission's file (notebook: in the cell) when ``in_file``, else in the block
    construct: str  # what was found: "assigns numpy.allclose"
    reason: str  # why it is worth a look: "patching a library the checks use"
    in_file: bool = False
    block: str | None = None  # the block id; None for added imports and helpers

    @property
    def where(self) -> str:
        if self.file.endswith(".ipynb"):
            return f"{self.file} cell {self.part}, line {self.line}" + ("" if self.in_file else " of the block")
        if self.in_file:
            return f"{self.file}:{self.line} {self.part}"
        what = "the block" if self.block else "the added code"
        return f"{self.file} {self.part}, line {self.line} of {what}"

    def __str__(self) -> str:
        return f"{self.where}: {self.construct} ({self.reason})"


def render_flags(flags: list[Flag]) -> str:
    """The flags, one a line, for the report ("" when there are none)."""
    return "\n".join(str(f) for f in flags)


def summary_cell(flags: list[Flag], most: int = 5) -> str:
    """One gradebook cell: ``"3 flags: common/layers.py:123 assigns numpy.allclose; ..."`` ("" when none)."""
    if not flags:
        return ""
    shown = [f"{f.where}: {f.construct}" for f in flags[:most]]
    more = f"; and {len(flags) - most} more (see the report)" if len(flags) > most else ""
    return f"{len(flags)} flag{'s' if len(flags) != 1 else ''}: " + "; ".join(shown) + more


# ---------------------------------------------------------------------------------------------------
# Reading one piece of code
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Context:
    """What surrounds a piece of code where it runs."""

    aliases: dict[str, str]  # name -> dotted path, from the imports in force (and the file's own definitions)
    outside: set[str]  # names bound outside the piece (module level, enclosing function): rebinding them is flagged
    shadowed: set[str]  # names of the enclosing function (parameters, locals): they hide module names
    module: str = ""  # the dotted name of the file's module ("common.layers"), for the course's own definitions
    package: str = ""  # the package relative imports start from ("common")


@dataclass(frozen=True)
class _Finding:
    line: int  # in the parsed text
    construct: str
    reason: str


def _chain(node: ast.expr) -> tuple[ast.expr, list[str]]:
    """``a.b.c`` -> (``a``, ["b", "c"]); ``getattr(a, "b")`` counts as ``a.b``."""
    attrs = []
    while True:
        if isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            attrs.append(node.args[1].value)
            node = node.args[0]
        else:
            return node, attrs[::-1]


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _scope_nodes(body: list[ast.stmt]):
    """The nodes of one scope: nested functions, classes, lambdas and comprehensions are not entered (their
    names, decorators and defaults are)."""
    stack = list(body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack += node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]
        elif isinstance(node, ast.ClassDef):
            stack += node.decorator_list + node.bases + [k.value for k in node.keywords]
        elif isinstance(node, ast.Lambda):
            stack += node.args.defaults + [d for d in node.args.kw_defaults if d]
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            stack.append(node.generators[0].iter)
        else:
            stack += list(ast.iter_child_nodes(node))


def _bound_in_scope(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names bound directly in a scope -> the first node binding each."""
    bound = {}
    for node in _scope_nodes(body):
        names = []
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names = [node.id]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names = [node.name]
        for n in names:
            bound.setdefault(n, node)
    return bound


def _all_bound(tree: ast.AST) -> set[str]:
    """Every name bound anywhere in ``tree`` (any scope), parameters included."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
    return names


def _import_aliases(node: ast.Import | ast.ImportFrom, package: str = "") -> dict[str, str]:
    """Names an import binds -> the dotted path they stand for (relative imports resolved from ``package``)."""
    out = {}
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.asname:
                out[a.asname] = a.name
            else:
                top = a.name.split(".")[0]
                out[top] = top
        return out
    base = node.module or ""
    if node.level:
        parts = package.split(".") if package else []
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    for a in node.names:
        if a.name != "*":
            out[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
    return out


class _Reader(ast.NodeVisitor):
    """Walks one parsed piece of code and collects findings."""

    def __init__(self, tree: ast.Module, context: _Context, top: list[ast.stmt], kind: str):
        self.context = context
        self.kind = kind  # "function" (a library block), "module" (a notebook cell, added code)
        self.top = top  # the statements of the piece itself (inside the wrapper that places it)
        self.findings: dict[tuple[int, str], _Finding] = {}
        self.docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
            and isinstance(n.body[0].value.value, str)
        }
        bound = _all_bound(tree)
        # names standing for modules: imports in the piece, then plain aliases (m = np.testing; for m in (np, torch))
        self.aliases: dict[str, str] = {}
        self.bound = bound | context.shadowed
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.aliases.update(_import_aliases(node, context.package))
        for _ in range(3):
            for node in ast.walk(tree):
                if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    path = self._path(node.value)
                    if path:
                        for t in targets:
                            if isinstance(t, ast.Name):
                                self.aliases[t.id] = path
                elif (
                    isinstance(node, (ast.For, ast.comprehension))
                    and isinstance(node.target, ast.Name)
                    and isinstance(node.iter, (ast.Tuple, ast.List, ast.Set))
                ):
                    paths = [p for p in map(self._path, node.iter.elts) if p]
                    if paths:
                        self.aliases[node.target.id] = paths[0]
            self.bound = (bound | context.shadowed) - set(self.aliases)
        self.buffers = {
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and self._path(node.value.func) in _IN_MEMORY
            for t in node.targets
            if isinstance(t, ast.Name)
        }

    # ---- names ----

    def _resolve(self, name: str) -> str | None:
        if name in self.aliases:
            return self.aliases[name]
        if name in self.bound:
            return None
        if name in self.context.aliases:
            return self.context.aliases[name]
        if name in self.context.outside:
            return None
        if name in _DEFAULT_ALIASES:
            return _DEFAULT_ALIASES[name]
        return name if name in _KNOWN_UNIMPORTED else None

    def _path(self, node: ast.expr) -> str | None:
        """The dotted path an expression stands for when it is a module or something reached from one."""
        root, attrs = _chain(node)
        if isinstance(root, ast.Name):
            base = self._resolve(root.id)
        elif isinstance(root, ast.Call) and root.args and isinstance(root.args[0], ast.Constant):
            # __import__("sys"), importlib.import_module("sys"): the module named
            importer = self._builtin(root.func) or self._path(root.func)
            named = root.args[0].value
            base = named if importer in ("__import__", "importlib.import_module") and isinstance(named, str) else None
        else:
            return None
        return ".".join([base, *attrs]) if base else None

    def _builtin(self, node: ast.expr) -> str | None:
        """The builtin a name refers to, when it is not rebound."""
        if isinstance(node, ast.Name) and not {node.id} & (self.bound | set(self.aliases) | set(self.context.aliases)):
            return node.id
        return None

    def add(self, node: ast.AST, construct: str, reason: str) -> None:
        line = getattr(node, "lineno", 1)
        self.findings.setdefault((line, construct), _Finding(line, construct, reason))

    # ---- visiting ----

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            rule = _rule_for(a.name)
            if rule and rule.reason and rule.on_import:
                self.add(node, f"imports {a.name}", rule.reason)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _import_aliases(node, self.context.package)
        module = node.module or ""
        rule = _rule_for(module) if module and not node.level else None
        module_reason = rule.reason if rule and rule.on_import else None
        if module_reason:
            self.add(node, f"imports from {module}", module_reason)
        for a in node.names:
            if a.name == "*":
                self.add(node, f"imports * from {module or '.'}", STAR)
                continue
            path = base[a.asname or a.name]
            rule = _rule_for(path)
            if rule and rule.reason and not rule.file_arg and rule.reason != module_reason:
                self.add(node, f"imports {path}", rule.reason)
            elif _is_dunder(a.name) and a.name in _DUNDERS:
                self.add(node, f"imports {path}", _DUNDERS[a.name])

    def visit_Name(self, node: ast.Name) -> None:
        name = self._builtin(node)
        if name in _BUILTINS:
            self.add(node, f"uses {name}", _BUILTINS[name])
        elif name in _ATTRIBUTE_BUILTINS:
            self.add(node, f"uses {name} indirectly", COMPUTED)
        path = self._path(node)
        if path and isinstance(node.ctx, ast.Load):
            self._check_path(node, path, called=False)
        elif isinstance(node.ctx, ast.Del) and path:
            self.add(node, f"deletes {path}", REBIND)

    def _check_path(self, node: ast.AST, path: str, called: bool, call: ast.Call | None = None) -> None:
        rule = _rule_for(path)
        if rule is None or rule.reason is None:
            return
        if rule.file_arg and call is not None and self._in_memory(call, *rule.file_arg):
            return
        self.add(node, f"{'calls' if called else 'uses'} {path}", rule.reason)

    def _in_memory(self, call: ast.Call, position: int, keyword: str) -> bool:
        arg = next((k.value for k in call.keywords if k.arg == keyword), None)
        if arg is None and len(call.args) > position:
            arg = call.args[position]
        if isinstance(arg, ast.Name):
            return arg.id in self.buffers
        return isinstance(arg, ast.Call) and self._path(arg.func) in _IN_MEMORY

    def visit_Attribute(self, node: ast.Attribute, call: ast.Call | None = None) -> None:
        store = isinstance(node.ctx, (ast.Store, ast.Del))
        verb = "assigns" if isinstance(node.ctx, ast.Store) else "deletes"
        owner = self._path(node.value)
        if store and owner:
            self.add(node, f"{verb} {owner}.{node.attr}", _patch_reason(owner, self.context.module))
            self._visit_root(node)
            return
        elif store and self._is_type_call(node.value):
            self.add(node, f"{verb} an attribute of type(...)", PATCH_CLASS)
        elif store and _is_dunder(node.attr):
            self.add(node, f"{verb} .{node.attr}", _DUNDERS.get(node.attr, DUNDER))
        elif not store:
            path = self._path(node)
            if path:
                self._check_path(node, path, called=call is not None, call=call)
                if _rule_for(path) is not None:
                    self._visit_root(node)  # the whole chain is judged by its dotted name
                    return
        if node.attr in _DUNDERS and not store:
            self.add(node, f"uses .{node.attr}", _DUNDERS[node.attr])
        if node.attr in _FRAME_ATTRIBUTES:
            self.add(node, f"uses .{node.attr}", FRAMES)
        if call is not None and node.attr in _FILE_METHODS and not self._path(node):
            self.add(node, f"calls .{node.attr}()", _FILE_METHODS[node.attr])
        self.visit(node.value)

    def _visit_root(self, node: ast.expr) -> None:
        """Visit what a chain of attributes starts from when it is not a plain name (``__import__("sys")``)."""
        root, _ = _chain(node)
        if not isinstance(root, ast.Name):
            self.visit(root)

    def _is_type_call(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Call) and self._builtin(node.func) == "type" and len(node.args) == 1

    def visit_Call(self, node: ast.Call) -> None:
        if self._ipython(node):
            return
        name = self._builtin(node.func)
        if name in _ATTRIBUTE_BUILTINS:
            self._attribute_builtin(node, name)
        elif name == "vars" and node.args and self._path(node.args[0]):
            self.add(node, f"uses vars({self._path(node.args[0])})", MODULES)
        elif self._path(node.func) in ("operator.attrgetter", "operator.methodcaller") and not all(
            isinstance(a, ast.Constant) for a in node.args[:1]
        ):
            self.add(node, f"calls {self._path(node.func)} with a computed name", COMPUTED)
        if isinstance(node.func, ast.Attribute):
            self.visit_Attribute(node.func, call=node)
        elif isinstance(node.func, ast.Name) and name not in _ATTRIBUTE_BUILTINS:
            path = self._path(node.func)
            if path:
                self._check_path(node.func, path, called=True, call=node)
            if name in _BUILTINS:
                self.add(node, f"calls {name}", _BUILTINS[name])
        elif name not in _ATTRIBUTE_BUILTINS:
            self.visit(node.func)
        for a in node.args:
            self.visit(a)
        for k in node.keywords:
            self.visit(k.value)

    def _attribute_builtin(self, node: ast.Call, name: str) -> None:
        if len(node.args) < 2:
            self.add(node, f"calls {name} without a name", COMPUTED)
            return
        target, attr = node.args[0], node.args[1]
        constant = isinstance(attr, ast.Constant) and isinstance(attr.value, str)
        owner = self._path(target)
        if not constant:
            self.add(node, f"calls {name} with a computed name", COMPUTED)
        if name in ("setattr", "delattr"):
            verb = "assigns" if name == "setattr" else "deletes"
            if owner:
                label = f"{owner}.{attr.value}" if constant else f"an attribute of {owner}"
                self.add(node, f"{verb} {label} with {name}", _patch_reason(owner, self.context.module))
            elif self._is_type_call(target):
                self.add(node, f"{verb} an attribute of type(...) with {name}", PATCH_CLASS)
            elif constant and _is_dunder(attr.value):
                self.add(node, f"{verb} .{attr.value} with {name}", _DUNDERS.get(attr.value, DUNDER))
        elif constant and owner:
            self._check_path(node, f"{owner}.{attr.value}", called=False)
        if constant and attr.value in _DUNDERS and name == "getattr":
            self.add(node, f"uses .{attr.value}", _DUNDERS[attr.value])
        if constant and attr.value in _FRAME_ATTRIBUTES:
            self.add(node, f"uses .{attr.value}", FRAMES)
        for a in node.args:
            self.visit(a)

    def _ipython(self, node: ast.Call) -> bool:
        """``get_ipython().system(...)`` and magics (what IPython makes of ``!cmd`` and ``%magic``): flagged,
        but for harmless magics whose code is read instead. False when ``node`` is no such call."""
        func = node.func
        if not (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Call)
            and self._builtin(func.value.func) == "get_ipython"
        ):
            return False
        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if func.attr in ("system", "getoutput"):
            self.add(node, f"runs the shell command {args[0] if args else ''!r}", SHELL)
        elif func.attr in ("run_line_magic", "run_cell_magic") and args:
            magic = args[0]
            if magic in _HARMLESS_MAGICS and len(args) >= 2:
                self._read_magic_code(node, args[-1])
            else:
                self.add(node, f"runs the IPython magic %{magic}", SHELL)
        else:
            self.add(node, f"calls get_ipython().{func.attr}", SHELL)
        return True

    def _read_magic_code(self, node: ast.Call, code: str) -> None:
        """The code a %time/%timeit runs, read as if it stood on the magic's line."""
        try:
            tree = ast.parse(code)
        except SyntaxError:
            return
        for n in ast.walk(tree):
            if hasattr(n, "lineno"):
                n.lineno = node.lineno
        self.visit(tree)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str) or id(node) in self.docstrings:
            return
        if value in _DUNDERS:
            self.add(node, f"names {value} in a string", _DUNDERS[value])
        if _PATH_TEXT.search(value):
            shown = value if len(value) <= 40 else value[:37] + "..."
            self.add(node, f"the string {shown!r}", PATHS)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            owner = self._path(node.value)
            if owner:
                verb = "changes" if isinstance(node.ctx, ast.Store) else "deletes from"
                self.add(node, f"{verb} {owner}[...]", _patch_reason(owner, self.context.module))
        self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> None:
        if not _is_dunder(node.name):
            return
        if node.name in _DUNDER_METHODS:
            self.add(node, f"defines {node.name}", _DUNDER_METHODS[node.name])
        elif not in_class and self.kind == "module" and node in self.top:  # a module's __getattr__, __dir__ ...
            self.add(node, f"defines a module-level {node.name}", DUNDER)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node, in_class=False)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for k in node.keywords:
            if k.arg == "metaclass":
                self.add(node, f"class {node.name} with a metaclass", DUNDER)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._function(item, in_class=True)
                for child in [*item.decorator_list, item.args, *item.body]:
                    self.visit(child)
                if item.returns:
                    self.visit(item.returns)
            else:
                self.visit(item)
        for child in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(child)

    # ---- rebinding names from outside ----

    def check_rebinding(self) -> None:
        """``global``/``nonlocal`` rebinding of names defined outside the piece, and (module-level pieces) plain
        rebinding of names the surrounding notebook or file defines."""
        own = set(_bound_in_scope(self.top)) if self.kind == "function" else None
        self._scope(self.top, [], own, top=True)

    def _scope(self, body: list[ast.stmt], enclosing: list[set[str]], own: set[str] | None, top: bool) -> None:
        """One scope: ``enclosing`` holds the names of the function scopes around it inside the piece, ``own``
        its own names when it is a function scope (None for class bodies and module-level pieces)."""
        bound = _bound_in_scope(body)
        declared = {}
        for node in _scope_nodes(body):
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                for n in node.names:
                    declared.setdefault(n, node)
        for name, decl in declared.items():
            if name not in bound:
                continue  # declared but never rebound: reading it is harmless
            if isinstance(decl, ast.Global):
                if name in self.context.outside or name in _BUILTIN_NAMES:
                    self.add(bound[name], f"rebinds {name} (global)", REBIND)
            elif not any(name in scope for scope in enclosing):
                self.add(bound[name], f"rebinds {name} (nonlocal)", REBIND)
        if top and self.kind == "module":
            for name, node in bound.items():
                if name in self.context.outside and not self._same_import(node, name):
                    self.add(node, f"rebinds {name}", REBIND)
        inner_enclosing = enclosing + [own] if own is not None else enclosing
        for node in _scope_nodes(body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
                self._scope(node.body, inner_enclosing, set(_bound_in_scope(node.body)) | params, top=False)
            elif isinstance(node, ast.ClassDef):
                self._scope(node.body, inner_enclosing, None, top=False)

    def _same_import(self, node: ast.AST, name: str) -> bool:
        """An import that binds ``name`` to what it already stands for (``import numpy as np`` again)."""
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            return False
        return _import_aliases(node, self.context.package).get(name) == self.context.aliases.get(name)


_BUILTIN_NAMES = set(dir(builtins))


def _patch_reason(owner: str, module: str) -> str:
    top = owner.split(".")[0]
    if top == "common" or (module and owner.startswith(module)):
        return PATCH_COURSE
    if top in CHECKED_LIBRARIES:
        return PATCH_CHECKED
    return PATCH_MODULE


def _read(tree: ast.Module, top: list[ast.stmt], context: _Context, kind: str) -> list[_Finding]:
    reader = _Reader(tree, context, top, kind)
    reader.visit(tree)
    reader.check_rebinding()
    return sorted(reader.findings.values(), key=lambda f: (f.line, f.construct))


# ---------------------------------------------------------------------------------------------------
# Placing each piece where it runs
# ---------------------------------------------------------------------------------------------------


def _module_name(file: str) -> tuple[str, str]:
    """``(module, package)`` of a library file: ``common/layers.py`` -> ``("common.layers", "common")``."""
    parts = file[: -len(".py")].split("/") if file.endswith(".py") else [Path(file).stem]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), ".".join(parts[:-1])
    return ".".join(parts), ".".join(parts[:-1])


def _module_level(tree: ast.Module, module: str, package: str) -> tuple[dict[str, str], set[str]]:
    """``(aliases, names)`` of a module's top level: what its imports stand for (and its own functions and
    classes, as ``module.name``), and every name it binds."""
    aliases, names = {}, set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            aliases.update(_import_aliases(node, package))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and module:
            aliases[node.name] = f"{module}.{node.name}"
    names |= set(_bound_in_scope(tree.body)) | set(aliases)
    return aliases, names


@dataclass
class _Piece:
    """One piece of code to read, and where its lines are."""

    block: str | None
    file: str
    part: str
    lines: list[str]
    kind: str  # "function" (library block), "module" (notebook cell, added import or helper)
    context: _Context
    ancestors: list[tuple[int, str]] | None = None  # library block: (column, "class X"/"def f"/...) around it
    indent: str = ""


@dataclass(frozen=True)
class _Surroundings:
    """Where a block of the instructor's file sits: the statements around it and its function's names."""

    indent: str
    function: str
    ancestors: tuple[tuple[int, str], ...]  # (column, label) of each statement around the block, outermost first
    shadowed: frozenset[str]  # parameters and locals of the functions around it
    local_aliases: tuple[tuple[str, str], ...]  # imports inside those functions


@dataclass(frozen=True)
class _InstructorFile:
    module: str
    package: str
    aliases: dict[str, str]
    names: frozenset[str]
    blocks: dict[str, _Surroundings]


def _position(node: ast.stmt) -> tuple[int, int]:
    return node.col_offset, node.lineno


@functools.lru_cache(maxsize=64)
def _instructor_file(file: str, text: str) -> _InstructorFile:
    """The instructor's library file read once (a class of submissions shares it); callers copy, never change."""
    module, package = _module_name(file)
    tree = ast.parse(text)
    aliases, names = _module_level(tree, module, package)
    compound = [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and isinstance(getattr(n, "body", None), list)]
    blocks = {}
    for block in parse_python(text, file):
        around = []  # outermost first; an elif sits at its if's column and adds no level
        for n in sorted((n for n in compound if n.lineno - 1 < block.start <= n.end_lineno - 1), key=_position):
            if not around or n.col_offset > around[-1].col_offset:
                around.append(n)
        shadowed, local = set(), {}
        for node in around:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                shadowed |= _all_bound(node) - {node.name}
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        local.update(_import_aliases(inner, package))
        blocks[block.name] = _Surroundings(
            block.indent,
            block.function,
            tuple((n.col_offset, _statement(n)) for n in around),
            frozenset(shadowed - set(local)),  # a local import names a module, not a value
            tuple(local.items()),
        )
    return _InstructorFile(module, package, aliases, frozenset(names), blocks)


class _LibraryFile:
    """One library file of a submission: the instructor's version around its blocks, and the student's additions."""

    def __init__(self, file: str, text: str, extra_imports: list[str], extra_defs: list[str]):
        self.file = file
        self.instructor = _instructor_file(file, text)
        self.module, self.package = self.instructor.module, self.instructor.package
        self.aliases, self.names = self.instructor.aliases, set(self.instructor.names)
        self.added_aliases = {}
        for text_ in extra_imports:
            with contextlib.suppress(SyntaxError):
                for node in ast.parse(text_).body:
                    self.added_aliases.update(_import_aliases(node, self.package))
        self.added_names = set(self.added_aliases)
        for text_ in extra_defs:
            with contextlib.suppress(SyntaxError):
                self.added_names |= {n.name for n in ast.parse(text_).body if hasattr(n, "name")}

    def block_piece(self, block_id: str, name: str, lines: list[str]) -> _Piece:
        context = _Context(
            aliases={**self.aliases, **self.added_aliases},
            outside=self.names | self.added_names,
            shadowed=set(),
            module=self.module,
            package=self.package,
        )
        where = self.instructor.blocks.get(name)
        if where is None:  # not a block of the instructor's file: read it on its own
            return _Piece(block_id, self.file, name.split("#")[0], lines, "function", context)
        context.aliases.update(where.local_aliases)
        context.shadowed = set(where.shadowed)
        return _Piece(
            block_id, self.file, where.function, lines, "function", context, list(where.ancestors), where.indent
        )

    def added_pieces(self, imports: list[str], defs: list[str]) -> list[_Piece]:
        context = _Context(
            aliases={**self.aliases, **self.added_aliases},
            outside=set(self.names),
            shadowed=set(),
            module=self.module,
            package=self.package,
        )
        pieces = [_Piece(None, self.file, "added imports", [text], "module", context) for text in imports]
        for text in defs:
            head = re.search(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", text, re.M)
            part = f"added {head.group(1)}" if head else "added code"
            pieces.append(_Piece(None, self.file, part, text.splitlines(), "module", context))
        return pieces


def _statement(node: ast.stmt) -> str:
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return f"def {node.name}"
    return f"a statement ({type(node).__name__.lower()})"


def _ipython_source(text: str) -> str:
    """Notebook code as Python: IPython's own translation of ``!cmd`` and ``%magic`` lines (without IPython, or
    where it fails, each such line becomes a ``get_ipython().system`` call, flagged like the real one)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(text)
    except Exception:  # IPython missing, or input its transformer rejects
        return "\n".join(
            f"{line[: len(line) - len(line.lstrip())]}get_ipython().system({line.strip()!r})"
            if line.lstrip().startswith(("!", "%"))
            else line
            for line in text.splitlines()
        )


def _notebook_context(path: Path, file: str, grade_id: str) -> _Context:
    """What the cells of the instructor's notebook, other than this block, import and define."""
    aliases, names = {}, set()
    try:
        nb = read_notebook(path)
    except (OSError, ValueError):
        return _Context({}, set(), set())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        lines = cell_source(cell).splitlines()
        if (nbgrader_meta(cell) or {}).get("grade_id") == grade_id:
            inside, kept = False, []
            for line in lines:
                if line.strip() == BEGIN:
                    inside = True
                elif line.strip() == END:
                    inside = False
                elif not inside:
                    kept.append(line)
            lines = kept
        try:
            tree = ast.parse(_ipython_source("\n".join(lines)))
        except SyntaxError:
            continue
        a, _ = _module_level(tree, "", "")
        aliases.update(a)
        names |= {
            n
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            for n in _bound_in_scope([node])
        }
    return _Context(aliases, names, set())


def _dedent(lines: list[str]) -> list[str]:
    """Lines with the common indentation of their code removed (comment and blank lines do not count)."""
    code = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    margin = min((len(line) - len(line.lstrip()) for line in code), default=0)
    return [line[min(margin, len(line) - len(line.lstrip())) :] for line in lines]


def _read_piece(piece: _Piece) -> list[_Finding]:
    """Findings of one piece, with lines counted within the piece (1 = its first line). Code too deep for the
    parser or for this walk is itself a finding, never an error that would stop the grading."""
    try:
        return _read_piece_unguarded(piece)
    except (RecursionError, MemoryError):
        return [_Finding(1, "code nested too deeply to be read", UNREADABLE)]


def _read_piece_unguarded(piece: _Piece) -> list[_Finding]:
    if piece.kind == "function" and piece.ancestors is not None:
        found = _read_in_place(piece)
        if found is not None:
            return found
    text = "\n".join(_dedent(piece.lines))
    if piece.file.endswith(".ipynb"):
        text = _ipython_source(text)
    if piece.kind == "function":
        source = "def __piece__():\n" + "\n".join("    " + line for line in text.splitlines()) + "\n    pass\n"
        offset = 1
    else:
        source, offset = text + "\n", 0
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []  # code that does not compile is never run (the grader stubs it)
    top = tree.body[0].body if piece.kind == "function" else tree.body
    return [_Finding(f.line - offset, f.construct, f.reason) for f in _read(tree, top, piece.context, piece.kind)]


def _read_in_place(piece: _Piece) -> list[_Finding] | None:
    """A library block read as it sits in its file: the statements around it stand in as ``if 1:`` headers at
    their columns, so a line indented less than the block lands outside its function, as it would when merged.
    None when it does not parse that way."""
    header = [" " * col + "if 1:" for col, _ in piece.ancestors]
    source = "\n".join(header + piece.lines + [piece.indent + "pass"]) + "\n"
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    offset = len(header)
    last = offset + len(piece.lines) + 1
    # walk down the headers: a statement beside header d (after the header lines) sits in the body of
    # ancestor d - 1; it has left the function when that ancestor is outside the innermost def
    function_depth = max((d for d, (_, label) in enumerate(piece.ancestors) if label.startswith("def ")), default=-1)
    escaped: list[tuple[ast.stmt, str]] = []
    body, where = tree.body, "at module level"
    for depth in range(len(header)):
        inner = body[0] if body and isinstance(body[0], ast.If) and body[0].lineno == depth + 1 else None
        if depth <= function_depth:
            escaped += [(s, where) for s in body if s is not inner and s.lineno > offset and s.lineno != last]
        if inner is None:
            break
        body, where = inner.body, f"in the body of {piece.ancestors[depth][1]}"
    top = [s for s in body if s.lineno != last]
    found = _read(tree, top, piece.context, piece.kind)
    for stmt, where in escaped:
        found.append(_Finding(stmt.lineno, f"{_statement(stmt)} outside its function ({where})", ESCAPE))
    return sorted(
        (_Finding(f.line - offset, f.construct, f.reason) for f in found if offset < f.line < last),
        key=lambda f: (f.line, f.construct),
    )


# ---------------------------------------------------------------------------------------------------
# Lines in the submission's files
# ---------------------------------------------------------------------------------------------------


def _body_starts(lines: list[str], bodies: list[list[str]]) -> list[int | None]:
    """Index of the first body line of each block in ``lines`` (in file order), or None if not found."""
    markers = [i for i, line in enumerate(lines) if line.strip() in (BEGIN, STUDENT_BEGIN)]
    out, after = [], -1
    for body in bodies:
        n = len(body)
        hit = next((i for i in markers if i > after and lines[i + 1 : i + 1 + n] == body), None)
        if hit is None:
            out.append(None)
        else:
            out.append(hit + 1)
            after = hit
    return out


def _submission_lines(sub_root: Path, file: str, pieces: list[_Piece]) -> dict[int, int]:
    """``{index of piece: 0-based line of its first line in the submission's file}`` for the pieces found."""
    path = sub_root / file
    try:
        if file.endswith(".ipynb"):
            cells = {
                (nbgrader_meta(c) or {}).get("grade_id"): cell_source(c).splitlines()
                for c in read_notebook(path).get("cells", [])
            }
            out = {}
            for k, piece in enumerate(pieces):
                start = _body_starts(cells.get(piece.part, []), [piece.lines])[0]
                if start is not None:
                    out[k] = start
            return out
        text = path.read_text(errors="replace")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    lines = text.splitlines()
    out = {}
    blocks = [(k, p) for k, p in enumerate(pieces) if p.block]
    for (k, _), start in zip(blocks, _body_starts(lines, [p.lines for _, p in blocks])):
        if start is not None:
            out[k] = start
    try:
        imports = {
            ast.unparse(n): n.lineno - 1 for n in ast.parse(text).body if isinstance(n, (ast.Import, ast.ImportFrom))
        }
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the student's file: anything may be in it
        imports = {}
    for k, piece in enumerate(pieces):
        if piece.block:
            continue
        if piece.part == "added imports" and piece.lines[0] in imports:
            out[k] = imports[piece.lines[0]]
        else:
            n = len(piece.lines)
            hit = next((i for i in range(len(lines) - n + 1) if lines[i : i + n] == piece.lines), None)
            if hit is not None:
                out[k] = hit
    return out


# ---------------------------------------------------------------------------------------------------
# A whole submission
# ---------------------------------------------------------------------------------------------------


def review_work(work: Work, sub_root: Path | None = None, instructor_root: Path = ROOT) -> list[Flag]:
    """The review flags of one submission's work: every block body, and the imports and helpers added to each
    library file. Names are resolved against the instructor's files (``instructor_root``); with ``sub_root`` (the
    submission's course root) each flag carries its line in the submission's file, else its line in the block.
    Reads only; runs nothing."""
    by_file: dict[str, list[tuple[str, str, list[str]]]] = {}
    for block_id, lines in work.bodies.items():
        if lines is None:
            continue
        file, _, name = block_id.partition("::")
        by_file.setdefault(file, []).append((block_id, name, lines))
    for file in work.extras:
        by_file.setdefault(file, [])
    flags = []
    for file, blocks in by_file.items():
        pieces = _pieces(file, blocks, work, Path(instructor_root))
        starts = _submission_lines(Path(sub_root), file, pieces) if sub_root is not None else {}
        for k, piece in enumerate(pieces):
            for f in _read_piece(piece):
                in_file = k in starts
                line = starts[k] + f.line if in_file else f.line
                flags.append(Flag(file, piece.part, line, f.construct, f.reason, in_file, piece.block))
    return flags


def _pieces(file: str, blocks: list[tuple[str, str, list[str]]], work: Work, instructor_root: Path) -> list[_Piece]:
    path = instructor_root / file
    if file.endswith(".ipynb"):
        return [
            _Piece(block_id, file, name, lines, "module", _notebook_context(path, file, name))
            for block_id, name, lines in blocks
        ]
    imports, defs = work.extras.get(file, ([], []))
    try:
        library = _LibraryFile(file, path.read_text(), imports, defs)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(
            f"review: cannot read the instructor's {file} under {instructor_root} ({err}); "
            f"pass the instructor's course root as instructor_root"
        ) from err
    pieces = [library.block_piece(block_id, name, lines) for block_id, name, lines in blocks]
    return pieces + library.added_pieces(imports, defs)
