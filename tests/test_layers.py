"""Which package may import which: kgan_service is the core both the API and the workers stand
on, so it imports neither of them (nor FastAPI or torch), and the API never imports the worker's
code (it sends jobs by task name through kgan_service.queue), nor the worker the API's."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every module each file under ``package`` imports, at any depth (inside functions too)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{file} imports {name}" for file, names in imported_modules(package).items() for name in sorted(names)
            if name.split(".")[0] in forbidden]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("kgan_service", ("api", "worker", "fastapi", "starlette", "torch", "torchvision", "kgan_core")),
    ("api", ("worker",)),
    ("worker", ("api", "fastapi", "starlette")),
])
def test_package_imports_stay_in_their_layer(package, forbidden):
    assert offenders(package, forbidden) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    from worker.tasks import x\n    import torch.nn\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert offenders("pkg", ("worker", "torch")) == ["pkg/m.py imports torch.nn", "pkg/m.py imports worker.tasks"]


def test_loading_the_api_loads_no_worker_module():
    code = "import sys, api.main; print(sorted(m for m in sys.modules if m == 'worker' or m.startswith('worker.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
