"""The runtime: an export folder's two graphs run by ONNX Runtime (no PyTorch on this path).

``Runtime`` is what the decoder needs of any runtime: graph 1 (``encode``) on a padded batch, graph 2
(``objects``) on the subjects found in it. ``OnnxRuntime`` runs an export; training has a PyTorch one
(``training.network.TorchRuntime``). On CUDA the hidden states stay on the GPU between the two graphs
(IO binding), and graph 2 thresholds its own output, so only candidate positions come back.

TensorRT is not offered: doing it properly needs the unfused graph, fp16 engine building, shape
profiles per length bucket and an engine cache, none of which can be built or checked without a GPU
here; a half-configured TensorRT is slower than CUDA. It can come back with the GPU work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from .schema import CONFIG_FILE, ENCODER_FILE, OBJECTS_FILE
from .tokenize import TOKENIZER_FILE

EXPORT_FILES = (ENCODER_FILE, OBJECTS_FILE, TOKENIZER_FILE, CONFIG_FILE)
PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


class Runtime(Protocol):
    """Graph 1 and graph 2 of an extractor, whatever runs them."""

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[Any, np.ndarray]:
        """Hidden states (in whatever form ``objects`` takes) and subject probabilities (B, L, 2)."""
        ...

    def objects(self, hidden: Any, subjects: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For subjects (N, 3) as batch index/start/end and thresholds (2,): the positions (K, 3) as
        subject/token/relation where an object start or end probability passes its threshold, and the
        two probabilities there (K, 2)."""
        ...


class ExportError(ValueError):
    """The export folder is missing, incomplete or unreadable, or the provider cannot run it."""


def is_export(folder: str | Path) -> bool:
    return (Path(folder) / ENCODER_FILE).is_file()


def check_export_folder(folder: Path) -> None:
    missing = [name for name in EXPORT_FILES if not (folder / name).is_file()]
    if missing:
        raise ExportError(f"'{folder}' is not an export folder (missing {', '.join(missing)}); run 'triplex export'")


def choose_providers(provider: str) -> list[str]:
    """``auto`` takes CUDA when this onnxruntime build has it, else the CPU; a named provider must exist."""
    available = ort.get_available_providers()
    if provider == "auto":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if PROVIDERS["cuda"] in available else [PROVIDERS["cpu"]]
    if provider not in PROVIDERS:
        raise ExportError(f"unknown provider '{provider}'; use auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[provider] not in available:
        raise ExportError(
            f"provider '{provider}' is not in this onnxruntime build (it has {', '.join(available)}); "
            "install onnxruntime-gpu for cuda, or run on the cpu"
        )
    return [PROVIDERS[provider]]


def session_options(threads: int, spinning: bool, on_gpu: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # On a GPU the host threads only launch kernels: one, not spinning, leaves the cores to the front ends.
    options.intra_op_num_threads = 1 if on_gpu else threads  # 0: one per core
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = spinning and not on_gpu
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


class OnnxRuntime:
    """The two graphs of an export folder in ONNX Runtime sessions, each with ``threads`` threads."""

    def __init__(self, folder: Path, provider: str = "auto", threads: int = 0, spinning: bool = True) -> None:
        providers = choose_providers(provider)
        on_gpu = providers[0] != PROVIDERS["cpu"]
        try:
            self.encoder = ort.InferenceSession(
                str(folder / ENCODER_FILE), session_options(threads, spinning, on_gpu), providers=providers
            )
            # Each session has its own thread pool, whose threads spin after a run; the small objects
            # graph must not spin, or on few cores it steals them from the next encoder run (measured:
            # 108 -> 179 sentences/s at batch 1 on 2 cores).
            self.objects_graph = ort.InferenceSession(
                str(folder / OBJECTS_FILE), session_options(threads, False, on_gpu), providers=providers
            )
        except Exception as error:  # corrupt files surface as many different onnxruntime errors
            raise unreadable(folder, error) from None
        if [output.name for output in self.objects_graph.get_outputs()] != ["object_positions", "object_probs"]:
            raise ExportError(f"'{folder}' was exported by an older triplex; export it again with 'triplex export'")
        self.provider = self.encoder.get_providers()[0]
        if provider != "auto" and self.provider != providers[0]:  # onnxruntime falls back without failing
            raise ExportError(f"provider '{provider}' could not be loaded (running on {self.provider} instead)")
        self.on_gpu = self.provider != PROVIDERS["cpu"]
        # CPU seconds of the calling threads inside the sessions' runs (their share of the graphs' work,
        # beside the sessions' own pool threads): what the engine subtracts to count its host work alone.
        self.run_cpu_s = 0.0

    def run(self, session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        started = time.thread_time()
        try:
            return session.run(None, feed)
        finally:
            self.run_cpu_s += time.thread_time() - started

    def run_bound(self, session: ort.InferenceSession, binding: ort.IOBinding) -> list:
        started = time.thread_time()
        try:
            session.run_with_iobinding(binding)
            return binding.get_outputs()
        finally:
            self.run_cpu_s += time.thread_time() - started

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[object, np.ndarray]:
        if not self.on_gpu:
            hidden, subject_probs = self.run(self.encoder, {"input_ids": input_ids, "attention_mask": attention_mask})
            return hidden, subject_probs
        binding = self.encoder.io_binding()
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input("attention_mask", attention_mask)
        binding.bind_output("hidden", "cuda")  # stays on the GPU for graph 2
        binding.bind_output("subject_probs", "cpu")
        hidden, subject_probs = self.run_bound(self.encoder, binding)
        return hidden, subject_probs.numpy()

    def objects(self, hidden: object, subjects: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.on_gpu:
            feed = {"hidden": hidden, "subjects": subjects, "thresholds": thresholds}
            positions, probs = self.run(self.objects_graph, feed)
            return positions, probs
        binding = self.objects_graph.io_binding()
        binding.bind_ortvalue_input("hidden", hidden)
        binding.bind_cpu_input("subjects", subjects)
        binding.bind_cpu_input("thresholds", thresholds)
        binding.bind_output("object_positions", "cpu")
        binding.bind_output("object_probs", "cpu")
        positions, probs = self.run_bound(self.objects_graph, binding)
        return positions.numpy(), probs.numpy()


def unreadable(folder: Path, error: Exception) -> ExportError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ExportError(
        f"cannot load the export in '{folder}' ({reason}); a file is truncated or corrupt: export it again"
    )
