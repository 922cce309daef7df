"""The import graph of a source tree, read from the code itself with `ast`.

Every `import` and `from ... import` statement counts, wherever it stands: at
module level, inside functions, under `if TYPE_CHECKING:`; and so does
`importlib.import_module("literal")`. Relative imports are resolved against
the importing module's package. `from package import name` is an import of
`package.name` when that is a module of the tree, else of `package`.

The rules checked by tests/test_imports.py are plain functions over the graph,
so they can be tried on a small planted tree as well as on the real one.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Import:
    """One import of `target` (a module of the tree, or an outside name) by `source`, at path:line."""

    source: str
    target: str
    path: str
    line: int
    name: str | None = None  # `from target import name`, when name is not a module

    def where(self) -> str:
        what = self.target if self.name is None else f"{self.name} from {self.target}"
        return f"{self.path}:{self.line}: {self.source} imports {what}"


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    is_package: bool  # an __init__.py

    @property
    def package(self) -> str:
        """The package the module belongs to (a package's __init__ belongs to itself)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def find_modules(root: str, packages: Iterable[str]) -> dict[str, Module]:
    """Every .py file under root/<package> for each top-level package, by dotted name (paths
    relative to root)."""
    modules: dict[str, Module] = {}
    for top in packages:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            rel = os.path.relpath(dirpath, root)
            prefix = rel.replace(os.sep, ".")
            for filename in sorted(filenames):
                if not filename.endswith(".py"):
                    continue
                path = os.path.join(rel, filename)
                stem = filename[:-3]
                if stem == "__init__":
                    modules[prefix] = Module(prefix, path, True)
                else:
                    modules[f"{prefix}.{stem}"] = Module(f"{prefix}.{stem}", path, False)
    return modules


def _resolve_relative(module: Module, level: int, name: str | None) -> str:
    base = module.package.split(".")
    if level > 1:
        if level - 1 >= len(base):
            raise ValueError(f"{module.path}: relative import beyond the top-level package")
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(root: str, module: Module, modules: Mapping[str, Module]) -> list[Import]:
    """The imports in one module's source (at root/module.path), resolved to dotted names."""
    with open(os.path.join(root, module.path), encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=module.path)
    found: list[Import] = []

    def add(target: str, line: int, name: str | None = None) -> None:
        found.append(Import(module.name, target, module.path, line, name))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, node.level, node.module)
            else:
                assert node.module is not None
                base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in modules:
                    add(candidate, node.lineno)
                else:
                    add(base, node.lineno, alias.name)
        elif isinstance(node, ast.Call) and _is_import_module(node.func):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                add(node.args[0].value, node.lineno)
            else:
                add("<dynamic import>", node.lineno)
    return found


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def import_graph(root: str, packages: Iterable[str]) -> tuple[dict[str, Module], list[Import]]:
    """The tree's modules and every import they make, in file and line order."""
    modules = find_modules(root, packages)
    edges = [edge for name in sorted(modules) for edge in imports_of(root, modules[name], modules)]
    return modules, edges


def within(name: str, package: str) -> bool:
    """`name` is `package` or inside it."""
    return name == package or name.startswith(package + ".")


# -- the rules --------------------------------------------------------------------------------------


def forbidden_imports(edges: Iterable[Import], importer: str, forbidden: Iterable[str]) -> list[Import]:
    """Imports by modules inside `importer` of anything inside one of `forbidden`."""
    banned = tuple(forbidden)
    return [e for e in edges if within(e.source, importer) and any(within(e.target, b) for b in banned)]


def layer_violations(edges: Iterable[Import], importer: str, allowed: Iterable[str],
                     tree: Iterable[str]) -> list[Import]:
    """Imports by `importer` of modules of the tree (top-level names in `tree`) outside `allowed`
    and outside itself; the standard library and third-party packages are not the layer's concern."""
    allowed = (importer, *allowed)
    tops = tuple(tree)
    return [e for e in edges if within(e.source, importer)
            and any(within(e.target, t) for t in tops)
            and not any(within(e.target, a) for a in allowed)]


def private_imports(edges: Iterable[Import], modules: Mapping[str, Module]) -> list[Import]:
    """Imports of a private module (`_name.py`, or inside a `_name` package) from outside the
    package that holds it."""
    out = []
    for edge in edges:
        owner = _private_owner(edge.target)
        if owner is not None and not within(edge.source, owner):
            out.append(edge)
    return out


def private_name_imports(edges: Iterable[Import], modules: Mapping[str, Module]) -> list[Import]:
    """Imports of a private name (`from pkg.mod import _name`) from outside the package that holds
    the module defining it."""
    out = []
    for edge in edges:
        if edge.name is None or not _is_private(edge.name):
            continue
        target = modules.get(edge.target)
        owner = target.package if target is not None else edge.target.rpartition(".")[0]
        if not within(edge.source, owner):
            out.append(edge)
    return out


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _private_owner(target: str) -> str | None:
    """The package whose privacy `target` is under: for a.b._c.d, a.b; None if nothing is private."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:i])
    return None


def package_cycles(edges: Iterable[Import], modules: Mapping[str, Module],
                   packages: Iterable[str]) -> list[list[Import]]:
    """Circles among `packages` (an edge A -> B when a module in A imports one in B), each as the
    imports that close it, one per step; at most one circle through each pair of packages."""
    names = tuple(packages)

    def package_of(module: str) -> str | None:
        return next((p for p in names if within(module, p)), None)

    witness: dict[tuple[str, str], Import] = {}
    for edge in edges:
        a, b = package_of(edge.source), package_of(edge.target)
        if a is not None and b is not None and a != b:
            witness.setdefault((a, b), edge)
    graph: dict[str, list[str]] = {p: sorted(b for (a, b) in witness if a == p) for p in names}
    cycles: list[list[Import]] = []
    seen: set[frozenset[str]] = set()
    for start in names:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    key = frozenset(path)
                    if key not in seen:
                        seen.add(key)
                        steps = [*path, start]
                        cycles.append([witness[(x, y)] for x, y in zip(steps, steps[1:], strict=False)])
                elif nxt not in path and nxt > start:
                    stack.append((nxt, [*path, nxt]))
    return cycles


def describe(violations: Iterable[Import]) -> str:
    return "\n".join(e.where() for e in violations)
