"""Training settings (no torch here: the CLI takes its defaults from this class before importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.schema import Thresholds

STATE_FILE = "training_state.pt"  # what --resume continues from


# Default epochs ("auto"): as many as fit a compute budget, at least MIN_AUTO_EPOCHS and at most
# MAX_AUTO_EPOCHS. An epoch costs about 72 * layers * hidden**2 FLOPs per training token (forward and
# backward through 12 * hidden**2 weights per layer); the budget is 20 epochs of WebNLG* with MiniLM-L6
# (benchmarks/README.md).
TRAIN_BUDGET_FLOPS = 2e14
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 3, 20


def auto_epochs(tokens: int, layers: int, hidden: int) -> int:
    """The default number of epochs for this many training tokens through this encoder."""
    per_epoch = 72 * layers * hidden**2 * max(tokens, 1)
    return max(MIN_AUTO_EPOCHS, min(MAX_AUTO_EPOCHS, int(TRAIN_BUDGET_FLOPS // per_epoch)))


@dataclass
class TrainSettings:
    epochs: int | None = None  # None: auto_epochs
    batch_size: int = 16
    # The defaults and the runs that chose them: benchmarks/README.md, "Training defaults".
    learning_rate: float = 2e-4
    head_learning_rate: float = 1e-3  # pointer heads and Conditional LayerNorm, trained from scratch
    warmup: float = 0.06  # fraction of all steps
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    freeze_embeddings: bool = False  # keep the encoder's word embeddings as pretrained
    negative_subjects: bool = False  # object rows for gold objects that are no subject
    # the object heads see each token's distance to the subject, up to this many tokens (0: they do not);
    # see training.network.PointerExtractor
    subject_distance: int = 0
    # ... and how many sentences lie between each token and the subject, up to this many (0: they do not)
    sentence_distance: int = 0
    # how many times the subject loss counts beside the object loss (subjects missed cost most triples)
    subject_loss_weight: float = 2.0
    # share of training tokens hidden behind the mask token, entities' too, drawn anew for every batch
    mask_rate: float = 0.0
    max_length: int = 256
    # padded tokens per forward pass: a longer batch runs in slices whose gradients add up to the batch's,
    # so memory follows this, not the longest batch (benchmarks/README.md, "Training memory")
    max_batch_tokens: int = 512
    seed: int = 42
    device: str = "auto"
    accumulate: int = 1
    eval_batch_size: int = 64
    resume: bool = False
    precision: str = "auto"  # fp32, bf16, or auto (see training.train.autocast_dtype)
    thresholds: str | None = None  # "START,END" (or four: subjects', objects') to keep; None: chosen on dev
    init_from: str | None = None  # a trained model folder to start from (training.start); None: the encoder alone
    # with init_from: train the start's any-object relation beside the schema's, as a helper (training.start)
    any_relation: bool = True

    def base_thresholds(self) -> Thresholds:
        """The thresholds every epoch's dev curve is drawn at: the given ones, else the known-good pair."""
        return Thresholds.parse(self.thresholds) if self.thresholds else Thresholds()


def check_device(device: str) -> str:
    """The PyTorch device that ``device`` names (auto: CUDA when PyTorch sees a GPU, else the CPU); raises
    ``ValueError`` for a name it is not, or a GPU that is not there."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"device '{device}': PyTorch sees no CUDA GPU here; use cpu (or auto)")
    return device
