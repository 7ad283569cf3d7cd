"""The package layout: every module imports on its own in any order (no import cycle), imports
point one way (backend -> mapper -> snnlib), and importing any module never imports samna."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("snnlib", "mapper", "backend")
#: A package may import the packages listed for it, and itself.
ALLOWED = {"snnlib": set(), "mapper": {"snnlib"}, "backend": {"mapper", "snnlib"}}


def project_modules() -> list[str]:
    """Every module of the three packages, found on disk (nothing is imported)."""
    names = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def module_path(name: str) -> Path:
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


# Each module is imported with every project module removed from sys.modules first, so that
# each import starts the project from nothing (third-party packages stay loaded: fast). A cycle
# shows up as an ImportError for whichever module enters it first.
IMPORT_EACH = """
import importlib, json, sys
names = json.loads(sys.argv[1])
failed = {}
for order in (names, names[::-1]):
    for name in order:
        for loaded in [m for m in sys.modules if m.split(".")[0] in ("snnlib", "mapper", "backend")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = repr(exc)
print(json.dumps({"failed": failed, "samna": "samna" in sys.modules}))
"""


def test_every_module_imports_alone_in_any_order():
    names = project_modules()
    assert {"backend.devices.registry", "backend.emulator.server", "backend.app.cli"} <= set(names)
    done = subprocess.run([sys.executable, "-c", IMPORT_EACH, json.dumps(names)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert result["samna"] is False


@pytest.mark.parametrize("name", project_modules())
def test_imports_point_one_way(name: str):
    package = name.split(".")[0]
    tree = ast.parse(module_path(name).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    wrong = {m for m in imported if m.split(".")[0] in PACKAGES
             and m.split(".")[0] not in ALLOWED[package] | {package}}
    assert not wrong, f"{name} imports {sorted(wrong)}: imports flow backend -> mapper -> snnlib"


def test_backend_top_level_holds_only_subpackages_and_shared_modules():
    modules = sorted(p.name for p in (ROOT / "backend").glob("*.py"))
    assert modules == ["__init__.py", "errors.py"]
