"""The inference engine: an export folder run by ONNX Runtime (no PyTorch on this path).

Graph 1 runs once for a batch of windows, graph 2 once for every subject found in that batch. On
CUDA the hidden states stay on the GPU between the two (IO binding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.pipeline import Extraction, Extractor
from model.schema import CONFIG_FILE, ENCODER_FILE, OBJECTS_FILE, ExtractorConfig
from model.tokenize import TOKENIZER_FILE, load_tokenizer

EXPORT_FILES = (ENCODER_FILE, OBJECTS_FILE, TOKENIZER_FILE, CONFIG_FILE)
PROVIDERS = {
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class ExportError(ValueError):
    """The export folder is missing, incomplete or unreadable."""


def is_export(folder: str | Path) -> bool:
    return (Path(folder) / ENCODER_FILE).is_file()


def choose_providers(provider: str) -> list[str]:
    """``auto`` takes CUDA when this onnxruntime build and machine have it, else the CPU."""
    available = ort.get_available_providers()
    if provider == "auto":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if PROVIDERS["cuda"] in available else [PROVIDERS["cpu"]]
    if provider not in PROVIDERS:
        raise ExportError(f"unknown provider '{provider}'; use auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[provider] not in available:
        raise ExportError(f"provider '{provider}' is not available in this onnxruntime (has {', '.join(available)})")
    chain = [PROVIDERS[provider]] + ([PROVIDERS["cuda"]] if provider == "tensorrt" else [])
    return chain + [PROVIDERS["cpu"]] if provider != "cpu" else chain


def session_options(threads: int, spinning: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: one per core
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


class Engine:
    """Extracts triples with an exported model; ``extract`` takes a batch of texts."""

    def __init__(self, folder: str | Path, provider: str = "auto", threads: int = 0, batch_size: int = 32) -> None:
        folder = Path(folder)
        missing = [name for name in EXPORT_FILES if not (folder / name).is_file()]
        if missing:
            raise ExportError(
                f"'{folder}' is not an export folder (missing {', '.join(missing)}); run 'triplex export'"
            )
        providers = choose_providers(provider)
        try:
            self.config = ExtractorConfig.load(folder)
            tokenizer = load_tokenizer(folder)
            self.encoder = ort.InferenceSession(
                str(folder / ENCODER_FILE), session_options(threads, True), providers=providers
            )
            # Each session has its own thread pool, whose threads spin after a run; the small objects
            # graph must not spin, or on few cores it steals them from the next encoder run (measured:
            # 108 -> 179 sentences/s at batch 1 on 2 cores).
            self.objects = ort.InferenceSession(
                str(folder / OBJECTS_FILE), session_options(threads, False), providers=providers
            )
        except Exception as error:  # corrupt files surface as many different onnxruntime/json errors
            raise ExportError(f"cannot load the export in '{folder}': {str(error).splitlines()[0]}") from None
        self.folder = folder
        self.provider = self.encoder.get_providers()[0]
        self.on_gpu = self.provider != PROVIDERS["cpu"]
        self.extractor = Extractor(tokenizer, self.config, self.run_encoder, self.run_objects, batch_size)

    def run_encoder(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[object, np.ndarray]:
        if not self.on_gpu:
            hidden, subject_probs = self.encoder.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
            return hidden, subject_probs
        binding = self.encoder.io_binding()
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input("attention_mask", attention_mask)
        binding.bind_output("hidden", "cuda")  # stays on the GPU for graph 2
        binding.bind_output("subject_probs", "cpu")
        self.encoder.run_with_iobinding(binding)
        hidden, subject_probs = binding.get_outputs()
        return hidden, subject_probs.numpy()

    def run_objects(self, hidden: object, subjects: np.ndarray) -> np.ndarray:
        if not self.on_gpu:
            return self.objects.run(None, {"hidden": hidden, "subjects": subjects})[0]
        binding = self.objects.io_binding()
        binding.bind_ortvalue_input("hidden", hidden)
        binding.bind_cpu_input("subjects", subjects)
        binding.bind_output("object_probs", "cpu")
        self.objects.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    def extract(self, texts: list[str], progress: bool = False) -> list[Extraction]:
        return self.extractor.extract(texts, progress)
