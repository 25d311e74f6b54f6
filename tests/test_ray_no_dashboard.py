"""Bulk extraction on a Ray head started without its dashboard (``ray start --include-dashboard=false``), the
lighter head for small machines: it has no state API, so the job cannot count its actors per node, and must
write its results all the same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_ray import bulk, ray_head, results, write_inputs


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    yield from ray_head("--include-dashboard=false")


def test_a_head_without_dashboard_runs_the_job(trained: tuple[Path, Path], cluster: str, tmp_path: Path) -> None:
    good = write_inputs(tmp_path / "in", 200)
    bulk(trained[1], tmp_path / "in", tmp_path / "local")
    bulk(trained[1], tmp_path / "in", tmp_path / "ray", "--ray", "--address", cluster, "--actors", "2")
    assert set(results(tmp_path / "ray")) == good and results(tmp_path / "ray") == results(tmp_path / "local")
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["texts"] == len(good) and summary["errors"] == 4 and summary["actors"] == {}
