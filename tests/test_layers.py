"""The import contract between the layers, and what a job may hold.

Layers (docs/layout.md):

- core: ``platform/refiner/`` minus ``distributed/`` and ``tracking/``; imports neither
  Ray nor MLflow, directly or through another module, nor the two layers below;
- Ray layer: ``platform/refiner/distributed/``, the only code that imports ``ray``; it
  may not import MLflow or the tracking layer (the jobs hand it a ``RunTracker``);
- tracking: ``platform/refiner/tracking/``, the only code that imports ``mlflow``; it
  may not import Ray or the Ray layer;
- jobs: ``jobs/*.py`` import neither ``ray`` nor ``mlflow`` themselves.

A job is thin when (checked on its syntax tree): at the top level it holds only imports,
constants, ``parse_args`` and ``main`` and the ``__main__`` guard (no other function,
no class); it has no ``try`` statement and does not import ``signal`` (exit statuses,
bad input and SIGTERM are ``refiner.runs.cli``'s: ``main`` is decorated with ``job_main``);
and it is at most ``MAX_JOB_LINES`` lines long.

Imports are read from the syntax tree (function-level imports included), and the core
is also imported for real in a fresh interpreter, which catches an import that loads
Ray or MLflow through a third package.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "platform" / "refiner"
JOBS = sorted((ROOT / "jobs").glob("*.py"))
MAX_JOB_LINES = 120

# layer -> module prefixes it may not import
FORBIDDEN = {
    "core": ("ray", "mlflow", "refiner.distributed", "refiner.tracking"),
    "distributed": ("mlflow", "refiner.tracking"),
    "tracking": ("ray", "refiner.distributed"),
    "jobs": ("ray", "mlflow"),
}


def layer_of(path: Path) -> str:
    if path.parent.parent == ROOT and path.parent.name == "jobs":
        return "jobs"
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if parts[0] in ("distributed", "tracking") else "core"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_modules(source: str) -> set[str]:
    """Every module an ``import``/``from ... import`` names, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def violations(path: Path, source: str | None = None) -> list[str]:
    source = path.read_text() if source is None else source
    banned = FORBIDDEN[layer_of(path)]
    return sorted(
        f"{path.relative_to(ROOT)} ({layer_of(path)}) imports {name}"
        for name in imported_modules(source)
        if any(name == b or name.startswith(f"{b}.") for b in banned)
    )


def job_problems(path: Path, source: str | None = None) -> list[str]:
    source = path.read_text() if source is None else source
    tree = ast.parse(source)
    name = path.relative_to(ROOT)
    problems = []
    if len(source.splitlines()) > MAX_JOB_LINES:
        problems.append(f"{name}: {len(source.splitlines())} lines (at most {MAX_JOB_LINES})")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name not in ("parse_args", "main"):
                problems.append(f"{name}: defines {node.name}() (move it into the library)")
            if node.name == "main" and not any(
                isinstance(d, ast.Name) and d.id == "job_main" for d in node.decorator_list
            ):
                problems.append(f"{name}: main() is not decorated with refiner.runs.cli.job_main")
        elif isinstance(node, ast.ClassDef):
            problems.append(f"{name}: defines class {node.name} (move it into the library)")
        elif not isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)):
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                if not _is_main_guard(node):
                    problems.append(f"{name}: top-level {type(node).__name__} statement")
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            problems.append(f"{name}:{node.lineno}: try statement (errors are refiner.runs.cli's)")
    if "signal" in imported_modules(source):
        problems.append(f"{name}: imports signal (SIGTERM is refiner.runs.cli.stop_on_sigterm's)")
    return problems


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def test_the_layers_exist() -> None:
    layers = {layer_of(p) for p in package_files()}
    assert layers == {"core", "distributed", "tracking"}
    assert JOBS, "no jobs found"


@pytest.mark.parametrize("path", [*package_files(), *JOBS], ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_respect_the_layers(path: Path) -> None:
    assert violations(path) == []


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_jobs_are_thin(path: Path) -> None:
    assert job_problems(path) == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The checks above fail on a bad file (so a passing run means something)."""
    core, ray_layer = PACKAGE / "model.py", PACKAGE / "distributed" / "loop.py"
    tracking = PACKAGE / "tracking" / "compare.py"
    assert violations(core, "def f():\n    import ray.data\n")  # a lazy import counts
    assert violations(core, "from mlflow import MlflowClient\n")
    assert violations(core, "from refiner.distributed import trainer\n")
    assert violations(ray_layer, "import mlflow\n")
    assert not violations(ray_layer, "import ray\n")
    assert violations(tracking, "import ray\n")
    assert not violations(tracking, "import mlflow\n")
    job = ROOT / "jobs" / "train.py"
    assert violations(job, "import ray\n")
    thin = '"""doc"""\nimport sys\nX = 1\n\n\n@job_main\ndef main(argv=None):\n    return 0\n'
    assert job_problems(job, thin) == []
    assert job_problems(job, thin + "\n\ndef helper():\n    pass\n")
    assert job_problems(job, thin.replace("@job_main\n", ""))
    assert job_problems(job, thin + "try:\n    pass\nexcept ValueError:\n    pass\n")
    assert job_problems(job, thin + "import signal\n")
    assert job_problems(job, thin + "\n" * MAX_JOB_LINES)


_IMPORT_EACH = """
import importlib, json, sys
loaded = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    heavy = [m for m in ("ray", "mlflow") if m in sys.modules]
    if heavy:
        loaded[name] = heavy
        break
print(json.dumps(loaded))
"""


def fresh_python(*args: str, cwd: Path = ROOT) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT / "tests")]),
    }
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_core_modules_load_neither_ray_nor_mlflow() -> None:
    """Each core module imported for real in a fresh interpreter, one after the other:
    the first that brings in Ray or MLflow (itself or through anything) is named."""
    core = [module_name(p) for p in package_files() if layer_of(p) == "core"]
    assert "refiner.checkpoints.restore" in core and "refiner.runs.cli" in core
    assert json.loads(fresh_python("-c", _IMPORT_EACH, *core)) == {}


def test_evaluate_on_a_local_checkpoint_loads_neither_ray_nor_mlflow(tmp_path: Path) -> None:
    script = f"""
import importlib.util, json, sys
from refiner_fixtures import tiny_orchestrator
from refiner.checkpoints.files import save_checkpoint
save_checkpoint({str(tmp_path / "checkpoint.pt")!r}, tiny_orchestrator())
spec = importlib.util.spec_from_file_location("evaluate_job", {str(ROOT / "jobs" / "evaluate.py")!r})
job = importlib.util.module_from_spec(spec)
spec.loader.exec_module(job)
code = job.main(["--checkpoint", {str(tmp_path / "checkpoint.pt")!r}, "--task", "parity",
                 "--size", "8", "--count", "32", "--max-steps", "2"])
print(json.dumps({{"code": code, "loaded": [m for m in ("ray", "mlflow") if m in sys.modules]}}))
"""
    assert json.loads(fresh_python("-c", script, cwd=tmp_path)) == {"code": 0, "loaded": []}
