"""Training settings (no torch here: the CLI takes its defaults from this class before importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

STATE_FILE = "training_state.pt"  # what --resume continues from


@dataclass
class TrainSettings:
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-4  # encoder
    head_learning_rate: float = 1e-3  # pointer heads and Conditional LayerNorm, trained from scratch
    warmup: float = 0.06  # fraction of all steps
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    max_length: int = 256
    seed: int = 42
    device: str = "auto"
    accumulate: int = 1
    eval_batch_size: int = 64
    resume: bool = False
    precision: str = "auto"  # fp32, bf16, or auto (see training.train.autocast_dtype)
    thresholds: str | None = None  # "START,END" to keep; None: chosen on dev after training
