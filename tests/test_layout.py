"""The package's two halves stay apart: the server imports only itself and the shared modules,
and the shared modules import neither half (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minigpt4_ui"
SHARED = {"facts", "schema", "model_schema", "urlfetch", "imagelimits", "webhook_signature"}


def package_imports(path: Path) -> set[str]:
    """The `minigpt4_ui` modules a file imports, as dotted names relative to the package."""
    here = list(path.relative_to(PACKAGE).parts[:-1])  # the file's package
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + 1] if node.level > 1 else here
            target = [*base, *(node.module.split(".") if node.module else [])]
            names = [target] if node.module else [[*target, alias.name] for alias in node.names]
            found.update(".".join(name) for name in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minigpt4_ui."):
            found.add(node.module.removeprefix("minigpt4_ui."))
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "server").rglob("*.py")), ids=str)
def test_the_server_imports_only_itself_and_shared_modules(path):
    outside = {name for name in package_imports(path)
               if not name.startswith("server") and name.split(".")[0] not in SHARED}
    assert not outside, f"{path.name} imports app modules {sorted(outside)}"


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_modules_import_only_shared_modules(name):
    imported = {module.split(".")[0] for module in package_imports(PACKAGE / f"{name}.py")}
    assert imported <= SHARED, f"{name}.py imports {sorted(imported - SHARED)}"


def test_no_two_modules_share_a_name():
    names = [path.stem for path in PACKAGE.rglob("*.py") if path.stem != "__init__"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


WRAPPER = {"replicate_api", "sse"}


@pytest.mark.parametrize("name", sorted(WRAPPER))
def test_the_wrapper_imports_only_shared_modules_and_no_gradio(name):
    """The wrapper stands alone (docs/programmatic-use.md): the app builds its client from its own
    settings, not the other way round."""
    path = PACKAGE / f"{name}.py"
    imported = {module.split(".")[0] for module in package_imports(path)}
    assert imported <= SHARED | WRAPPER, f"{name}.py imports {sorted(imported - SHARED - WRAPPER)}"
    third_party = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, ast.Import) for alias in node.names}
    third_party |= {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and not node.level and node.module}
    assert "gradio" not in third_party
