"""The inference engine: an export folder run by ONNX Runtime (no PyTorch on this path).

Graph 1 runs once for a batch of windows, graph 2 once for every subject found in that batch (in
chunks); graph 2 thresholds its own output, so only candidate positions come back. On CUDA the hidden
states stay on the GPU between the two (IO binding). The CLI, the service's engine process and batch
jobs all use this class.

TensorRT is not offered: doing it properly needs the unfused graph, fp16 engine building, shape
profiles per length bucket and an engine cache, none of which can be built or checked without a GPU
here; a half-configured TensorRT is slower than CUDA. It can come back with the GPU work.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from triplex.model.pipeline import Extraction, Extractor
from triplex.model.schema import CONFIG_FILE, ENCODER_FILE, OBJECTS_FILE, ExtractorConfig, Thresholds
from triplex.model.tokenize import TOKENIZER_FILE, load_tokenizer

EXPORT_FILES = (ENCODER_FILE, OBJECTS_FILE, TOKENIZER_FILE, CONFIG_FILE)
PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


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


def powers_of_two(low: int, high: int) -> list[int]:
    """low, 2 low, 4 low ... below high, then high."""
    values = [low]
    while values[-1] * 2 < high:
        values.append(values[-1] * 2)
    return values + [high] if high > low else values


class Engine:
    """Extracts triples with an exported model; ``extract`` takes a batch of texts."""

    def __init__(
        self,
        folder: str | Path,
        provider: str = "auto",
        threads: int = 0,
        batch_size: int = 32,
        spinning: bool = True,
        thresholds: Thresholds | None = None,
        streams: int = 1,
    ) -> None:
        """``thresholds``: instead of the export's own (chosen on dev data at training time). ``streams``:
        batches run at once on the CPU, the ``threads`` shared among them (see ``pipelined``); 0, one
        single-threaded stream per thread."""
        folder = Path(folder)
        check_export_folder(folder)
        providers = choose_providers(provider)
        on_gpu = providers[0] != PROVIDERS["cpu"]
        threads = threads or len(os.sched_getaffinity(0))
        streams = 1 if on_gpu else streams or threads
        threads = max(1, threads // streams)
        try:
            self.config = ExtractorConfig.load(folder)
            tokenizer = load_tokenizer(folder)
            self.encoder = ort.InferenceSession(
                str(folder / ENCODER_FILE), session_options(threads, spinning, on_gpu), providers=providers
            )
            # Each session has its own thread pool, whose threads spin after a run; the small objects
            # graph must not spin, or on few cores it steals them from the next encoder run (measured:
            # 108 -> 179 sentences/s at batch 1 on 2 cores).
            self.objects = ort.InferenceSession(
                str(folder / OBJECTS_FILE), session_options(threads, False, on_gpu), providers=providers
            )
        except Exception as error:  # corrupt files surface as many different onnxruntime/json errors
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ExportError(
                f"cannot load the export in '{folder}' ({reason}); a file is truncated or corrupt: export it again"
            ) from None
        if [output.name for output in self.objects.get_outputs()] != ["object_positions", "object_probs"]:
            raise ExportError(f"'{folder}' was exported by an older triplex; export it again with 'triplex export'")
        if thresholds is not None:
            self.config.thresholds = thresholds
        self.provider = self.encoder.get_providers()[0]
        if provider != "auto" and self.provider != providers[0]:  # onnxruntime falls back without failing
            raise ExportError(f"provider '{provider}' could not be loaded (running on {self.provider} instead)")
        self.folder = folder
        self.on_gpu = self.provider != PROVIDERS["cpu"]
        self.extractor = Extractor(
            tokenizer, self.config, self.run_encoder, self.run_objects, batch_size, self.on_gpu, streams
        )

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

    def run_objects(
        self, hidden: object, subjects: np.ndarray, thresholds: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self.on_gpu:
            positions, probs = self.objects.run(
                None, {"hidden": hidden, "subjects": subjects, "thresholds": thresholds}
            )
            return positions, probs
        binding = self.objects.io_binding()
        binding.bind_ortvalue_input("hidden", hidden)
        binding.bind_cpu_input("subjects", subjects)
        binding.bind_cpu_input("thresholds", thresholds)
        binding.bind_output("object_positions", "cpu")
        binding.bind_output("object_probs", "cpu")
        self.objects.run_with_iobinding(binding)
        positions, probs = binding.get_outputs()
        return positions.numpy(), probs.numpy()

    def warm_up(self, max_batch_size: int, max_batch_tokens: int) -> None:
        """Run both graphs on every shape bucket the service will meet (lengths and batch sizes in powers
        of two up to the limits), graph 2 with a real subject in every row, so the first requests do not
        pay for kernel selection and memory arenas."""
        thresholds = np.array([self.config.thresholds.start, self.config.thresholds.end], dtype=np.float32)
        token = self.extractor.tokenizer.get_vocab_size() // 2  # any ordinary token
        for length in powers_of_two(8, self.config.max_length):
            for batch in powers_of_two(1, max(1, min(max_batch_size, max_batch_tokens // length))):
                input_ids = np.full((batch, length), token, dtype=np.int64)
                hidden, _ = self.run_encoder(input_ids, np.ones_like(input_ids))
                subjects = np.array([[row, 1, min(2, length - 1)] for row in range(batch)], dtype=np.int64)
                self.run_objects(hidden, subjects, thresholds)

    def extract(self, texts: list[str], progress: bool = False) -> list[Extraction]:
        return self.extractor.extract(texts, progress)
