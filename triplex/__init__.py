"""triplex: relational triple extraction with exact character offsets.

    import triplex
    extractor = triplex.load("export")               # an export folder, or a training checkpoint
    extractor("Alice Moreau was born in Osaka.")      # -> [Triple(subject=Entity(...), predicate=...)]

An export folder runs on ONNX Runtime (no PyTorch needed); a training checkpoint runs on PyTorch and
needs the ``train`` extra. Both give the same ``Triple`` objects as the service, with ``to_dict()`` for
its JSON form.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from triplex.model.extractor import Extraction, Extractor, open_export
from triplex.model.runtime import ExportError, is_export
from triplex.model.schema import CONFIG_FILE, Entity, Thresholds, Triple

try:
    __version__ = version("triplex")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["Entity", "Extraction", "Extractor", "ModelError", "Thresholds", "Triple", "__version__", "load"]


class ModelError(ValueError):
    """The path holds no usable model, or the runtime it needs is missing; the message says what to do."""


def load(
    path: str | Path, provider: str = "auto", batch_size: int = 32, thresholds: Thresholds | str | None = None
) -> Extractor:
    """An ``Extractor`` over an export folder (ONNX Runtime) or a training checkpoint (PyTorch).

    ``provider``: ``auto`` (CUDA when available, else the CPU), ``cuda`` or ``cpu``. ``thresholds``:
    pointer thresholds instead of the model's own, which training chose on dev data: a ``Thresholds``, or
    ``"START,END"`` (``"SUBJECT_START,SUBJECT_END,OBJECT_START,OBJECT_END"`` for subjects apart from objects).
    """
    try:
        chosen = Thresholds.parse(thresholds) if isinstance(thresholds, str) else thresholds
    except ValueError as error:
        raise ModelError(str(error)) from None
    folder = Path(path).expanduser()
    if is_export(folder):
        try:
            return open_export(folder, provider, batch_size=batch_size, thresholds=chosen)
        except ExportError as error:
            raise ModelError(str(error)) from None
    if not (folder / CONFIG_FILE).is_file():
        raise ModelError(
            f"'{path}' is neither an export folder nor a trained model folder (no {CONFIG_FILE}); "
            "train one with 'triplex train' and export it with 'triplex export'"
        )
    return load_checkpoint(folder, provider, batch_size, chosen)


def load_checkpoint(folder: Path, provider: str, batch_size: int, thresholds: Thresholds | None) -> Extractor:
    """A training checkpoint on PyTorch (the ``train`` extra)."""
    from triplex.training.settings import check_device

    try:
        device = check_device(provider)
        from triplex.training.network import torch_extractor
    except ImportError:
        raise ModelError(
            f"'{folder}' is a training checkpoint, which needs PyTorch: pip install 'triplex[train]', "
            "or load its export folder instead"
        ) from None
    except ValueError as error:
        raise ModelError(str(error)) from None
    return torch_extractor(folder, device, batch_size, thresholds)
