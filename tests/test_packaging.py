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
