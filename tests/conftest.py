"""Shared fixtures: a tiny randomly initialised BERT built on the spot, and paths to ../shared."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from triplex.training.data import ReadSummary
from triplex.training.export import export
from triplex.training.settings import TrainSettings
from triplex.training.train import train

from .sample import RELATIONS, generate
from .tiny_encoder import build_encoder

ROOT = Path(__file__).resolve().parents[1]  # the project
SHARED = ROOT.parent / "shared"
EXTRA_TEXT = [
    "Ｆｕｌｌ-width ＡＢＣ text, café au lait; naïve coöperation!",
    "Barack Obama was born in Honolulu, Hawaii. He worked for the U.S. Senate.",
    "《冰山上的来客》由王洛勇主演。内容简介《宜兴紫砂图典》由故宫出版社出版",
]


def shared_path(relative: str) -> Path:
    """A path under ../shared, or a skip when it is not there (CI elsewhere, a checkout on its own)."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


torch.set_num_threads(1)  # tiny models gain nothing from more, and CI machines have 2 cores


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that ``build`` fills once per test run, also when pytest-xdist runs the tests in several
    processes (they share the run's temporary folder, above each one's own)."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    folder = root / name
    with FileLock(f"{folder}.lock"):
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [example.text for example in generate(400, seed=123)] + EXTRA_TEXT
    return built_once(tmp_path_factory, "tiny-bert", lambda folder: build_encoder(folder, texts))


OVERFIT = TrainSettings(  # fp32 everywhere: "auto" would pick bf16 on some CPUs only
    epochs=60, batch_size=8, learning_rate=2e-3, head_learning_rate=5e-3, warmup=0.05, ema_decay=0.9, precision="fp32"
)


@pytest.fixture(scope="session")
def trained(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny model that has learnt the sample sentences (checkpoint) and its fp32 export."""

    def build(folder: Path) -> None:
        examples = generate(40, seed=7)
        checkpoint = folder / "checkpoint"
        train(examples, examples, RELATIONS, str(tiny_encoder), checkpoint, OVERFIT, ReadSummary(), log=lambda m: None)
        export(checkpoint, folder / "export", "fp32", log=lambda m: None)

    folder = built_once(tmp_path_factory, "trained", build)
    return folder / "checkpoint", folder / "export"


# Under pytest-xdist (make test: -n 2 --dist loadfile) each file runs in one process, so that its module
# fixtures are built once. The demo's training and the Ray clusters share one process, so that they never
# run beside each other (Ray Serve's proxy died starting beside the demo's training on 2 cores), and come
# first. Label Studio comes second, so the other process starts with it beside the demo's training and then
# takes the rest; one process runs all three one after the other took 2 minutes more. At the start each
# process is also handed the next file in this order: test_api.py, a fast one, follows the demo and Ray.
TOGETHER = ("tests/test_demo.py", "tests/test_ray.py")
ORDER = (*TOGETHER, "tests/test_label_studio.py", "tests/test_api.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def first(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return ORDER.index(path) if path in ORDER else len(ORDER)

    items.sort(key=first)  # stable: each file keeps its own order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # xdist would order the files by their number of tests, not by ORDER

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "demo and Ray" if scope in TOGETHER else scope

    return Scheduling(config, log)
