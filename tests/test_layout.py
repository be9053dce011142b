"""The folders are the architecture (docs/architecture.md): the app (`app/`, and `app.py` that
starts it), the server (`server/`), the API wrapper (`replicate_api/`) and the facts they share
(`shared/`), with imports running one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minigpt4_ui"
HALVES = ("app", "server", "replicate_api", "shared")
# The app starts the embedded server here, and only here.
STARTS_THE_SERVER = {PACKAGE / "app" / "backend.py"}


def files(half: str) -> list[Path]:
    return sorted((PACKAGE / half).rglob("*.py"))


def package_imports(path: Path) -> set[str]:
    """The `minigpt4_ui` modules a file imports, as dotted names relative to the package."""
    here = list(path.relative_to(PACKAGE).parts[:-1]) if path.is_relative_to(PACKAGE) else []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + 1] if node.level > 1 else here
            target = [*base, *(node.module.split(".") if node.module else [])]
            names = [target] if node.module else [[*target, alias.name] for alias in node.names]
            found.update(".".join(name) for name in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minigpt4_ui."):
            found.add(node.module.removeprefix("minigpt4_ui."))
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("minigpt4_ui.") for alias in node.names
                         if alias.name.startswith("minigpt4_ui."))
    return found


def halves_imported(path: Path) -> set[str]:
    return {name.split(".")[0] for name in package_imports(path)}


def third_party(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    return names | {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and not node.level and node.module}


def test_every_module_lives_in_one_of_the_four_folders():
    loose = [path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
    assert not loose, loose
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(HALVES)


@pytest.mark.parametrize("path", [*files("app"), ROOT / "app.py"], ids=str)
def test_the_app_imports_the_server_only_where_it_starts_it(path):
    if path not in STARTS_THE_SERVER:
        assert "server" not in halves_imported(path)


@pytest.mark.parametrize("path", files("server"), ids=str)
def test_the_server_imports_only_itself_and_shared_modules(path):
    assert halves_imported(path) <= {"server", "shared"}, path
    assert "gradio" not in third_party(path)


@pytest.mark.parametrize("path", files("replicate_api"), ids=str)
def test_the_wrapper_imports_only_itself_shared_modules_and_no_gradio(path):
    """The wrapper stands alone (docs/programmatic-use.md): the app builds its client from its own
    settings, not the other way round."""
    assert halves_imported(path) <= {"replicate_api", "shared"}, path
    assert "gradio" not in third_party(path)


@pytest.mark.parametrize("path", files("shared"), ids=str)
def test_shared_modules_import_neither_half(path):
    assert halves_imported(path) <= {"shared"}, path
    assert "gradio" not in third_party(path)


def test_no_two_modules_share_a_name():
    names = [path.stem for path in PACKAGE.rglob("*.py") if path.stem != "__init__"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
