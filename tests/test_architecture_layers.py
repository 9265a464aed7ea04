"""The package's folders import each other only downwards, in the order ``docs/architecture.md`` gives.

An AST walk over ``src/spaghettinet`` (every ``import`` and ``from … import``, at any depth, relative ones resolved)
finds each import of a higher layer; there is none, and the test fails when one appears.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spaghettinet"

#: Lowest first. Files at the package root that every layer may use are the base layer.
LAYERS = ("base", "data", "pipeline_config", "model", "training", "deploy", "evaluation", "workflow", "cli")
BASE_MODULES = {
    "coco_metrics",
    "drawing",
    "errors",
    "io_utils",
    "stage_files",
    "textformat",
    "tf_runtime",
    "__init__",
    "__main__",
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "spaghettinet":
        return None
    if len(parts) == 1 or parts[1] in BASE_MODULES:
        return "base"
    name = parts[1].removesuffix(".py")
    return name if name in LAYERS else "base"


def _module_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported_modules(path: Path) -> set[str]:
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from spaghettinet import workflow` imports a layer by name.
            found.update(f"{target}.{alias.name}" for alias in node.names if target == "spaghettinet")
    return found


def upward_imports() -> set[tuple[str, str]]:
    upward = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer(_module_of(path))
        for target in _imported_modules(path):
            layer = _layer(target)
            if layer is not None and LAYERS.index(layer) > LAYERS.index(own):
                upward.add((path.relative_to(PACKAGE).as_posix(), target))
    return upward


def test_no_folder_imports_a_higher_one():
    found = sorted(upward_imports())
    assert not found, f"imports of a higher layer (order: {' → '.join(LAYERS)}): {found}"


def test_the_walk_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    """The checker itself: a relative import inside a function, of a higher layer, is found."""
    package = tmp_path / "spaghettinet"
    (package / "data").mkdir(parents=True)
    (package / "training").mkdir()
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "training" / "__init__.py").write_text("")
    (package / "training" / "augment.py").write_text("")
    (package / "data" / "reader.py").write_text("def read():\n    from ..training import augment\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    assert upward_imports() == {("data/reader.py", "spaghettinet.training")}
