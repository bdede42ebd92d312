"""What built a cached thing, as data: the code that ran and the library versions it ran on.

A cache that outlives the code must be keyed by the code, or the gate measures
yesterday's model. A stage's *code fingerprint* hashes the source of its module and
of every module it imports from the build packages, directly or through others (lazy imports
inside functions included), read statically from the files, so it needs no run.

The rule is the package: everything under `gpt2compress.build` (stages, sources, data,
tokenizers, CPU facts) and `gpt2compress.runtimes` (how each runtime saves, loads, scores
and generates) is build code; nothing else is. The walk does not enter `core`, `measure`,
`history`, `report` or `cli`: registries, the cache, metric definitions and progress lines
change no weights. A module named as a start (a score key names the perplexity code) counts
by its own code.

A key follows content, not location: docstrings, comments and formatting are left out (the AST
is hashed), and so is where an import of this package comes from (the imported module counts
by its own content), so moving a module rebuilds nothing. Imports under `if TYPE_CHECKING:`
are for type hints only and are not followed.

A stage's *library versions* are those of the packages it names (and Python's
major.minor), read from the installed distributions.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Iterator

PACKAGE = "gpt2compress"
BUILD_PACKAGES = (f"{PACKAGE}.build", f"{PACKAGE}.runtimes")  # build code: everything under these, nothing else


def is_build_code(module: str) -> bool:
    """Under a build package, or a plugin's own module (a stage registered from outside this package)."""
    return module.split(".")[0] != PACKAGE or any(module == p or module.startswith(p + ".") for p in BUILD_PACKAGES)


def package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def module_file(module: str, root: Path) -> Path | None:
    """`gpt2compress.build.stages.pruning` -> root/stages/pruning.py (or a package's __init__.py); a plugin module that
    registered a stage from outside this package -> its own file; None otherwise."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        loaded = sys.modules.get(module)
        path = getattr(loaded, "__file__", None)
        return Path(path) if path and path.endswith(".py") else None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except those under `if TYPE_CHECKING:`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node) if not _type_checking_only(child))


def imported_modules(module: str, root: Path, at_import: bool = False) -> set[str]:
    """This package's modules that `module` imports anywhere in its body (`at_import`: only in statements run when
    it is imported, not inside functions: the edges an import circle is made of)."""
    path = module_file(module, root)
    if path is None:
        return set()
    package, found = _package_of(module, path), set()
    tree = ast.parse(path.read_text("utf-8"))
    nodes = [n for n in tree.body if not _type_checking_only(n)] if at_import else _runtime_nodes(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # `from . import finetune` names a module; `from .io import record` does not
                sub = f"{base}.{alias.name}"
                found.add(sub if module_file(sub, root) else base)
    return {m for m in found if module_file(m, root) is not None}


def build_modules(modules: tuple[str, ...], root: Path) -> list[str]:
    """`modules` and the build code they import, transitively."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(m for m in imported_modules(module, root) if is_build_code(m) and m not in seen)
    return sorted(seen)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _without_own_import_paths(tree: ast.AST) -> ast.AST:
    """`from ..runtimes.pytorch import record` -> `from <ours> import record`: where a module of this package lives
    is not code (the module itself counts by its content wherever it moves)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == PACKAGE):
            node.module, node.level = "<ours>", 0
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    alias.name = "<ours>"
    return tree


def source_hash(path: Path) -> str:
    """The code of one file, blind to comments, docstrings, formatting and where its own imports live."""
    tree = _without_own_import_paths(_without_docstrings(ast.parse(path.read_text("utf-8"))))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_fingerprint(modules: tuple[str, ...], root: Path | None = None) -> dict[str, str]:
    """{module: hash} of `modules` and the build code they run. Computed once per process: the code it imported."""
    root = root or package_root()
    return {m: source_hash(module_file(m, root)) for m in build_modules(modules, root)}


@functools.lru_cache(maxsize=None)
def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions (None: not installed), plus Python's major.minor."""
    return {"python": ".".join(platform.python_version_tuple()[:2]), **{n: _installed(n) for n in sorted(set(names))}}


def fingerprint(modules: tuple[str, ...], libraries: tuple[str, ...]) -> dict:
    """What goes into a cache key: one hash for the code (by content, not module names) and the versions."""
    code = code_fingerprint(tuple(sorted(set(modules))))
    digest = hashlib.sha256(repr(sorted(code.values())).encode()).hexdigest()[:16]  # content, not names
    return {"code": digest, "libraries": library_versions(libraries)}  # module names are no part of a key


@functools.lru_cache(maxsize=1)
def project_commit() -> str | None:
    """The git commit of this checkout (with `-dirty` if it has changes), or None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package_root()), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit
