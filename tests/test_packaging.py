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
