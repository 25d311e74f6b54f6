"""Shared fixtures: a tiny randomly initialised BERT built on the spot, and paths to ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [example.text for example in generate(400, seed=123)] + EXTRA_TEXT
    return build_encoder(tmp_path_factory.mktemp("tiny-bert"), texts)


OVERFIT = TrainSettings(  # fp32 everywhere: "auto" would pick bf16 on some CPUs only
    epochs=60, batch_size=8, learning_rate=2e-3, head_learning_rate=5e-3, warmup=0.05, ema_decay=0.9, precision="fp32"
)


@pytest.fixture(scope="session")
def trained(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny model that has learnt the sample sentences (checkpoint) and its fp32 export."""
    checkpoint, exported = tmp_path_factory.mktemp("checkpoint"), tmp_path_factory.mktemp("export")
    examples = generate(40, seed=7)
    train(examples, examples, RELATIONS, str(tiny_encoder), checkpoint, OVERFIT, ReadSummary(), log=lambda m: None)
    export(checkpoint, exported, "fp32", log=lambda m: None)
    return checkpoint, exported
