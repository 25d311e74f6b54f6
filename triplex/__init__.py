"""triplex: relational triple extraction with exact character offsets.

    import triplex
    extractor = triplex.load("export")               # an export folder, or a training checkpoint
    extractor("Alice Moreau was born in Osaka.")      # -> [Triple(subject=Entity(...), predicate=...)]

An export folder runs on ONNX Runtime (no PyTorch needed); a training checkpoint runs on PyTorch and
needs the ``train`` extra. Both give the same ``Triple`` objects as the service, with ``to_dict()`` for
its JSON form.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import overload

from triplex.model.pipeline import Extraction, Extractor
from triplex.model.schema import CONFIG_FILE, Entity, ExtractorConfig, Thresholds, Triple
from triplex.model.tokenize import lone_surrogate

try:
    __version__ = version("triplex")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["Entity", "Extraction", "ModelError", "Triple", "TripleExtractor", "__version__", "load"]


class ModelError(ValueError):
    """The path holds no usable model, or the runtime it needs is missing; the message says what to do."""


class TripleExtractor:
    """Triples from texts with a loaded model: ``extractor(text)`` or ``extractor([text, ...])``."""

    def __init__(self, extractor: Extractor) -> None:
        self.extractor = extractor

    @property
    def config(self) -> ExtractorConfig:
        return self.extractor.config

    @overload
    def extract(self, texts: str, progress: bool = False) -> list[Triple]: ...

    @overload
    def extract(self, texts: Sequence[str], progress: bool = False) -> list[list[Triple]]: ...

    def extract(self, texts: str | Sequence[str], progress: bool = False) -> list[Triple] | list[list[Triple]]:
        """The triples of one text, or a list of them for a list of texts (batched on the accelerator)."""
        if isinstance(texts, str):
            return self.extract_all([texts], progress)[0].triples
        return [found.triples for found in self.extract_all(texts, progress)]

    __call__ = extract

    def extract_all(self, texts: Sequence[str], progress: bool = False) -> list[Extraction]:
        """Triples and window counts per text."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {index} is a {type(text).__name__}, not a string")
            problem = lone_surrogate(text)
            if problem:
                raise ValueError(f"text {index} {problem}")
        return self.extractor.extract(list(texts), progress)


def load(
    path: str | Path, provider: str = "auto", batch_size: int = 32, thresholds: tuple[float, ...] | None = None
) -> TripleExtractor:
    """A ``TripleExtractor`` over an export folder (ONNX Runtime) or a training checkpoint (PyTorch).

    ``provider``: ``auto`` (CUDA when available, else the CPU), ``cuda`` or ``cpu``. ``thresholds``:
    (start, end) pointer thresholds instead of the model's own, which training chose on dev data, or
    (object start, object end, subject start, subject end) for subjects apart from objects.
    """
    try:
        chosen = Thresholds(*thresholds) if thresholds is not None else None
    except ValueError as error:
        raise ModelError(str(error)) from None
    from triplex.model.engine import Engine, ExportError, is_export

    folder = Path(path).expanduser()
    if is_export(folder):
        try:
            return TripleExtractor(Engine(folder, provider, batch_size=batch_size, thresholds=chosen).extractor)
        except ExportError as error:
            raise ModelError(str(error)) from None
    if not (folder / CONFIG_FILE).is_file():
        raise ModelError(
            f"'{path}' is neither an export folder nor a trained model folder (no {CONFIG_FILE}); "
            "train one with 'triplex train' and export it with 'triplex export'"
        )
    try:
        import torch
    except ImportError:
        raise ModelError(
            f"'{path}' is a training checkpoint, which needs PyTorch: pip install 'triplex[train]', "
            "or load its export folder instead"
        ) from None
    from triplex.model.network import load_extractor, torch_runners
    from triplex.model.tokenize import load_tokenizer

    if provider not in ("auto", "cpu") and not provider.startswith("cuda"):
        raise ModelError(f"unknown provider '{provider}'; use auto, cuda or cpu")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if provider == "auto" else provider
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("provider 'cuda' asked for, but PyTorch sees no CUDA GPU here; use cpu")
    model, config = load_extractor(folder)
    config.thresholds = chosen or config.thresholds
    runners = torch_runners(model.to(device))
    return TripleExtractor(
        Extractor(load_tokenizer(folder), config, *runners, batch_size, overlap=device.startswith("cuda"))
    )
