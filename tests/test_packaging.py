"""The images install docker/requirements-serve.txt; it must stay the package's serving dependencies."""

from __future__ import annotations

import pytest

from .conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_image_requirements_match_the_package_dependencies() -> None:
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "docker" / "requirements-serve.txt").read_text().splitlines()
    image = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    # onnxruntime is left to each image: onnxruntime-gpu in the GPU one, onnxruntime in the CPU one
    assert sorted(image) == sorted(dep for dep in package if not dep.startswith("onnxruntime"))
    assert not any(name in dep for dep in image for name in ("torch", "transformers"))


def test_python_versions_are_those_whose_asyncio_timeouts_are_builtin_timeout_errors() -> None:
    """On 3.10 ``asyncio.wait_for`` raises ``asyncio.TimeoutError``, which ``except TimeoutError`` misses."""
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert required == ">=3.11"


BLOCK_TORCH = """
import importlib.abc, pkgutil, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is unimportable in this test")

sys.meta_path.insert(0, NoTorch())
import triplex, triplex.model, triplex.service
for package in (triplex.model, triplex.service):
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("ray_"):  # Ray's modules need the ray extra, not torch
            __import__(f"{package.__name__}.{module.name}")
print(len(triplex.load(sys.argv[1], provider="cpu")(["Mei Tanaka was born in Osaka.", "x"])))
"""


def test_the_runtime_and_the_service_import_no_torch(trained) -> None:
    """``triplex.model`` and ``triplex.service`` (and ``triplex.load`` on an export) with torch unimportable."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, str(trained[1])], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "2", result.stderr[-2000:]
