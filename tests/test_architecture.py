"""The package's shape (docs/architecture.md), beyond the import-linter contracts that .ci/run checks: no private name
imported across modules, modules under 600 lines, function-local imports of medsight modules only in the CLI, and
the task table complete."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "medsight"
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_private_name_is_imported_from_another_module() -> None:
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medsight"):
                found += [f"{_name(path)} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "\n".join(found)


def test_modules_stay_under_600_lines() -> None:
    long = [f"{_name(p)}: {n} lines" for p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)


def test_function_local_imports_of_medsight_only_in_the_cli() -> None:
    found = []
    for path in _modules():
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medsight") and node.level == 0:
                    found.append(f"{_name(path)}:{node.lineno} from {node.module} import ...")
                elif isinstance(node, ast.Import) and any(a.name.startswith("medsight") for a in node.names):
                    found.append(f"{_name(path)}:{node.lineno} import {node.names[0].name}")
    assert not found, "\n".join(sorted(set(found)))


def test_every_task_folder_is_in_the_table() -> None:
    from medsight.tasks import TASKS

    folders = {p.name for p in (PACKAGE / "tasks").iterdir() if p.is_dir() and (p / "task.py").is_file()}
    assert folders == set(TASKS)
    for name, task in TASKS.items():
        assert task.name == name and task.train is not None and task.load_plan is not None


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed")
def test_import_contracts_hold() -> None:
    out = subprocess.run(["lint-imports"], cwd=PACKAGE.parents[1], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:]
