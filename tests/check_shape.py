"""The shape of the ``nbtrack`` package: sizes, private imports, MLflow's place and the layer arrows.

Run by ``tests/run.sh``'s lint step (``python tests/check_shape.py``); prints one line per offender
(``path:line: what, and the rule``) and exits 1 when there is any, 0 when the package keeps its
shape. The rules (issue 17):

- no module over 400 lines, no function over 60 lines (the package only; tests are exempt);
- no ``from x import _private``: a name another module uses is public (drop the underscore);
- ``mlflow`` is imported only in ``nbtrack/store/``; heavy libraries (mlflow, dvc, papermill,
  nbformat, nbclient, pandas) only inside functions, so ``%load_ext nbtrack`` stays fast;
- every module starts with ``from __future__ import annotations``;
- arrows point down: front-ends (``magics``, ``cli``, ``server``) never import each other;
  services (``track``, ``runs``, ``replay``) import no front-end and no other service; adapters
  (``capture``, ``store``, ``runner``, ``signing``) import no service or front-end; foundation
  (``models``, ``config``, ``errors``, ``redact``, ``tags``) imports only foundation. The top-level
  ``nbtrack/__init__.py`` may import, inside its hook functions, what the hooks need. Imports under
  ``if TYPE_CHECKING:`` count: a type-only arrow upwards is still an arrow upwards.

Example:
    $ python tests/check_shape.py
    nbtrack/capture/git.py:339: function GitProvider.capture is 104 lines (limit 60): split it by role
    tests/check_shape.py: 1 offender(s)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
HEAVY = ("mlflow", "dvc", "dvc_data", "papermill", "nbformat", "nbclient", "pandas")
LAYERS: dict[str, tuple[str, ...]] = {
    "front-end": ("magics", "cli", "server"),
    # Workflows compose services (a sweep: the headless run, the replay's workspace, the runs service);
    # front-ends call them; nothing below imports them.
    "workflow": ("sweep",),
    "service": ("track", "runs", "replay"),
    "adapter": ("capture", "store", "runner", "signing"),
    "foundation": ("models", "config", "errors", "redact", "tags", "compare", "handoff"),
}
ROOT = "nbtrack"


@dataclass(frozen=True)
class Offence:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Import:
    """One import statement's target module (absolute), where it is, and how it is nested."""

    target: str
    names: tuple[str, ...]
    line: int
    in_function: bool
    type_checking: bool


def component(module: str) -> tuple[str, str] | None:
    """``nbtrack.capture.git`` -> ``("adapter", "nbtrack.capture")``; None outside the layers.

    ``nbtrack`` itself is ``("root", "nbtrack")``.
    """
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    if len(parts) == 1:
        return "root", ROOT
    for layer, names in LAYERS.items():
        if parts[1] in names:
            return layer, f"{ROOT}.{parts[1]}"
    return None


def module_name(path: Path, root: Path) -> str:
    """A module's dotted name: ``nbtrack/capture/__init__.py`` -> ``nbtrack.capture``.

    Example:
        >>> module_name(Path("/r/nbtrack/cli/demo.py"), Path("/r"))
        'nbtrack.cli.demo'
    """
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[Import]:
    """Every import in ``tree``, with whether it sits in a function or under ``TYPE_CHECKING``."""

    def walk(node: ast.AST, in_function: bool, type_checking: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, (), child.lineno, in_function, type_checking)
            elif isinstance(child, ast.ImportFrom):
                names = tuple(a.name for a in child.names)
                target = _resolve(child, module, is_package)
                yield Import(target, names, child.lineno, in_function, type_checking)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from walk(ast.Module(body=child.body, type_ignores=[]), in_function, True)
                yield from walk(ast.Module(body=child.orelse, type_ignores=[]), in_function, type_checking)
            else:
                nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                yield from walk(child, in_function or nested, type_checking)

    yield from walk(tree, False, False)


def _arrow(importer: tuple[str, str], target: tuple[str, str]) -> str | None:
    """Why an import from ``importer``'s component into ``target``'s breaks the arrows, else None."""
    (layer, comp), (t_layer, t_comp) = importer, target
    if comp == t_comp or t_layer == "root":
        return None
    if layer == "front-end" and t_layer == "front-end":
        return "front-ends never import each other (move the shared code down a layer)"
    if layer == "workflow" and t_layer in ("front-end", "workflow"):
        return f"a workflow imports no {t_layer} (move the shared code down a layer)"
    if layer == "service" and t_layer in ("front-end", "workflow", "service"):
        return f"a service imports no {t_layer} (move the shared code down a layer)"
    if layer == "adapter" and t_layer in ("front-end", "workflow", "service"):
        return f"an adapter imports no {t_layer} (pass what it needs in, or move the code down)"
    if layer == "foundation" and t_layer != "foundation":
        return f"foundation imports only foundation, not an {t_layer}"
    return None


def _targets(imp: Import) -> list[str]:
    """The modules an import reaches: ``from nbtrack import magics`` reaches ``nbtrack.magics``."""
    if imp.target == ROOT and imp.names:
        return [f"{ROOT}.{name}" if component(f"{ROOT}.{name}") else ROOT for name in imp.names]
    return [imp.target]


def check_imports(path: str, tree: ast.Module, module: str, is_package: bool) -> Iterator[Offence]:
    """Private names, mlflow outside the store, heavy imports at import time, and the arrows."""
    here = component(module)
    for imp in imports(tree, module, is_package):
        private = [n for n in imp.names if n.startswith("_") and not n.endswith("__")]
        if private and imp.target != "__future__":
            yield Offence(
                path,
                imp.line,
                f"imports private {', '.join(private)} from {imp.target}: make the name public there",
            )
        top = imp.target.split(".")[0]
        if top == "mlflow" and not module.startswith(f"{ROOT}.store"):
            yield Offence(path, imp.line, "imports mlflow outside nbtrack/store/: go through the store")
        if top in HEAVY and not imp.in_function and not imp.type_checking:
            yield Offence(path, imp.line, f"imports {top} at module level: import it inside the function")
        if here is None or (here[0] == "root" and imp.in_function):
            continue
        for target in _targets(imp):
            there = component(target)
            why = _arrow(here, there) if there else None
            if why is None and here[0] == "root" and there is not None and there[0] != "foundation":
                why = "the top-level package imports other layers only inside its hook functions"
            if why:
                yield Offence(path, imp.line, f"{module} imports {target}: {why}")


def check_file(path: Path, root: Path) -> Iterator[Offence]:
    """Every offence of one module of the package."""
    rel = path.relative_to(root).as_posix()
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        yield Offence(rel, 1, f"module is {lines} lines (limit {MAX_MODULE_LINES}): split it by role")
    tree = ast.parse(text, filename=rel)
    module = module_name(path, root)
    if component(module) is None:
        yield Offence(rel, 1, f"{module} belongs to no layer: add it to LAYERS in tests/check_shape.py")
    if _annotates(tree) and not _has_future_annotations(tree):
        yield Offence(rel, 1, "no `from __future__ import annotations` (the module has type hints)")
    yield from check_functions(rel, tree)
    yield from check_imports(rel, tree, module, path.name == "__init__.py")


def _annotates(tree: ast.Module) -> bool:
    """Whether a module has anything the future import concerns: functions, classes, annotations."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.AnnAssign)
    return any(isinstance(node, kinds) for node in ast.walk(tree))


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )


def check_functions(path: str, tree: ast.Module) -> Iterator[Offence]:
    """Functions (methods and nested functions included) longer than the limit, def line to last."""

    def walk(node: ast.AST, prefix: str) -> Iterator[Offence]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                size = (child.end_lineno or child.lineno) - child.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    yield Offence(
                        path,
                        child.lineno,
                        f"function {name} is {size} lines (limit {MAX_FUNCTION_LINES}): split it by role",
                    )
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def check(root: Path) -> list[Offence]:
    """Every offence in ``root/nbtrack``, sorted by file and line.

    Example:
        >>> check(Path(__file__).resolve().parents[1])  # doctest: +SKIP
        []
    """
    found: list[Offence] = []
    for path in sorted((root / ROOT).rglob("*.py")):
        found.extend(check_file(path, root))
    return sorted(found, key=lambda o: (o.path, o.line, o.message))


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    if not (root / ROOT).is_dir():
        print(f"check_shape: no {ROOT}/ package in {root}; pass the repository root", file=sys.stderr)
        return 2
    found = check(root)
    for offence in found:
        print(offence)
    if found:
        print(f"tests/check_shape.py: {len(found)} offender(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
