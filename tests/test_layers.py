"""The dependency direction of ../shared/DESIGN.md, checked on the source: lower layers never
import higher ones (imports inside functions count; ``if TYPE_CHECKING:`` blocks do not)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "voxvec"

# What each part of voxvec may import from the rest of voxvec. Parts not listed (the package
# root, hub, cli, export, __main__) sit on top and may use anything below them.
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "atomic": set(),
    "registry": set(),
    "distributed": set(),
    "config": {"registry"},
    "audio": {"atomic"},
    "models": {"registry", "config", "audio"},
    "losses": {"models", "audio", "registry", "config"},
    "data": {"atomic", "audio"},
    "embedding_files": {"atomic", "audio", "data"},
    "weights": {"atomic", "config", "registry", "audio", "models"},
    "runtime": {"audio", "models"},
    "eval": {"atomic", "audio", "data", "embedding_files", "models", "runtime"},
    "pipeline": {"audio"},
    "onnx_embedder": {"audio", "pipeline", "runtime"},
    "inference": {"audio", "models", "pipeline", "runtime"},
    "train": {
        "_version",
        "atomic",
        "audio",
        "config",
        "data",
        "distributed",
        "eval",
        "losses",
        "models",
        "registry",
        "runtime",
        "weights",
    },
}
TOP = "voxvec"  # the package root: its public API


def _part(module: str) -> str:
    parts = module.split(".")
    return TOP if len(parts) == 1 else parts[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == TOP:
                found.extend(f"{TOP}.{alias.name}" for alias in node.names)
            elif node.module.startswith(f"{TOP}."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.split(".")[0] == TOP)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _dependencies() -> dict[str, dict[str, list[str]]]:
    """part -> imported part -> the files importing it."""
    deps: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        part = _part(module)
        for imported in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = _part(imported) if imported != TOP else TOP
            if target != part:
                deps[part][target].append(str(relative))
    return deps


def test_lower_layers_never_import_higher_ones() -> None:
    deps = _dependencies()
    for part in ALLOWED:  # every rule names a real part of the package
        assert (PACKAGE / part).is_dir() or (PACKAGE / f"{part}.py").is_file(), part
    violations = [
        f"{part} imports {target} (in {', '.join(sorted(set(files)))})"
        for part, targets in sorted(deps.items())
        if part in ALLOWED
        for target, files in sorted(targets.items())
        if target not in ALLOWED[part]
    ]
    assert not violations, "\n".join(violations)


def test_nothing_but_the_entry_point_imports_the_cli() -> None:
    deps = _dependencies()
    users = sorted(part for part, targets in deps.items() if "cli" in targets)
    assert users in ([], ["__main__"])


def test_the_checker_sees_function_level_imports_and_skips_type_checking_blocks() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from voxvec.models import X\n"
        "def f():\n    from voxvec.inference import Embedder\n"
        "import voxvec.weights.bundle\n"
        "from voxvec import runtime\n"
    )
    assert _imports(tree) == ["voxvec.inference", "voxvec.weights.bundle", "voxvec.runtime"]
