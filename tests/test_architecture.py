"""The package's shape: layers that only import downwards (so no import circles), and a light side that never
imports torch, scikit-learn or matplotlib, checked statically (every import, inside functions too) and at run
time (the CLI's generate path in a fresh interpreter)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.onnx_fixtures import make_bundle

PACKAGE = Path(__file__).resolve().parents[1] / "vaexprs"
# The data flow, bottom to top: a module may import its own layer and the layers below, never above.
LAYERS = [
    ("base", ["vaexprs", "vaexprs.errors", "vaexprs.config", "vaexprs.files", "vaexprs.progress"]),
    ("data", ["vaexprs.data"]),
    ("bundle", ["vaexprs.bundle"]),
    ("registry", ["vaexprs.registry"]),
    ("generate", ["vaexprs.generate"]),
    ("analysis", ["vaexprs.analysis"]),
    ("model", ["vaexprs.model"]),
    ("tracking", ["vaexprs.tracking"]),
    ("jobs", ["vaexprs.jobs"]),
    ("cli", ["vaexprs.cli", "vaexprs.__main__"]),
]
LIGHT_LAYERS = ("base", "data", "bundle", "registry", "generate")
HEAVY = ("torch", "sklearn", "matplotlib")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    best, best_len = "", -1
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = layer, len(prefix)
    assert best, f"{module} is in no layer: add it to LAYERS"
    return best


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every import in a file (module level and inside functions), except `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            skip |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_layers_only_import_downwards_so_there_are_no_circles():
    modules = package_modules()
    order = [layer for layer, _ in LAYERS]
    wrong = []
    for name, path in modules.items():
        mine = order.index(layer_of(name))
        for target, line in imports_of(path):
            if target.split(".")[0] != "vaexprs" or target not in modules:
                continue  # outside the package, or `from vaexprs.x import name` (its module is checked)
            if order.index(layer_of(target)) > mine:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({layer_of(name)}) imports {target}")
    assert not wrong, "imports against the data flow:\n" + "\n".join(wrong)


def test_light_side_never_imports_heavy_libraries():
    """Statically: no module of the light layers imports torch, scikit-learn or matplotlib, even lazily."""
    heavy = []
    for name, path in package_modules().items():
        if layer_of(name) not in LIGHT_LAYERS:
            continue
        for target, line in imports_of(path):
            if target.split(".")[0] in HEAVY:
                heavy.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not heavy, "\n".join(heavy)


def test_generating_from_the_cli_loads_no_heavy_library(tmp_path: Path):
    """At run time: `vaexprs --help` and a whole generation leave torch, scikit-learn and matplotlib unloaded;
    --help does not load numpy, anndata, onnxruntime or MLflow either, and writing .h5ad needs no anndata/pandas."""
    bundle = make_bundle(tmp_path / "b", conditional=True)
    code = textwrap.dedent(
        f"""
        import sys
        from vaexprs.cli import main
        main(["--help"]); main(["generate", "--help"]); main(["train", "--help"])
        slow = [m for m in ("torch", "sklearn", "matplotlib", "mlflow", "anndata", "onnxruntime", "numpy")
                if m in sys.modules]
        assert not slow, f"--help imported {{slow}}"
        assert main(["generate", {str(bundle)!r}, "-n", "30", "-q", "-o", {str(tmp_path)!r} + "/first.h5ad"]) == 0
        slow = [m for m in ("anndata", "pandas") if m in sys.modules]  # a second of imports, not needed to write
        assert not slow, f"writing .h5ad imported {{slow}}"
        for suffix in (".h5ad", ".csv", ".npy"):
            assert main(["generate", {str(bundle)!r}, "-n", "30", "-q", "-o", {str(tmp_path)!r} + "/out" + suffix]) == 0
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        assert not heavy, f"generation imported {{heavy}}"
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out.h5ad").exists() and (tmp_path / "out.npy").exists()
