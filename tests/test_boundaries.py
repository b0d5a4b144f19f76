"""Context boundaries (STYLE.md): contexts use `core` and other contexts' facades only.

- `mercato.core` imports no context.
- A context imports another context only through its package facade (`mercato.orders`),
  never its internals (`mercato.orders.repository`).
- No function-local imports in `src/`: a cycle is a boundary bug to fix, not to hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "mercato"
COMPOSITION_ROOTS = {"app", "background", "cli", "migrations", "__main__", "event_contracts"}
CONTEXTS = (
    {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    - COMPOSITION_ROOTS
    - {"core"}
)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at top level) for every mercato import in a file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mercato"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(name, node.lineno, id(node) in top_level) for name in names]
        elif isinstance(node, ast.Import):
            found += [
                (a.name, node.lineno, id(node) in top_level)
                for a in node.names
                if a.name.startswith("mercato")
            ]
    return found


def _owner(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def test_contexts_exist() -> None:
    assert "catalog" in CONTEXTS


def test_core_imports_no_context() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in (SRC / "core").rglob("*.py")
        for module, line, _ in _imports(path)
        if module.split(".")[1] in CONTEXTS | COMPOSITION_ROOTS
    ]
    assert offenders == []


def test_contexts_use_only_each_others_facades() -> None:
    offenders = []
    for context in CONTEXTS:
        for path in (SRC / context).rglob("*.py"):
            for module, line, _ in _imports(path):
                parts = module.split(".")
                target = parts[1]
                if target in COMPOSITION_ROOTS:
                    offenders.append(
                        f"{path.relative_to(SRC)}:{line} imports the composition root {module}"
                    )
                # `from mercato.orders import X` is parts == [mercato, orders, X]: the facade.
                elif target in CONTEXTS and target != context and len(parts) > 3:
                    offenders.append(f"{path.relative_to(SRC)}:{line} reaches into {module}")
    assert offenders == []


# The command line imports inside its commands: a command should not pay for the web app's
# imports (~0.4 s) at start. It is a composition root, free to import anything, so the
# boundary checks above lose nothing by not seeing those imports.
LAZY_IMPORTS = SRC / "cli"


def test_no_function_local_imports() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(LAZY_IMPORTS):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        offenders.append(f"{path.relative_to(SRC)}:{inner.lineno}")
    assert offenders == []
