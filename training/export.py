"""Export a trained extractor to two ONNX graphs, optimise them, and check them against PyTorch.

graph 1, ``encoder.onnx``:  input_ids, attention_mask -> hidden, subject_probs
graph 2, ``objects.onnx``:  hidden, subjects (N, 3: batch index, start, end), thresholds (2,)
                            -> object_positions (K, 3: subject, token, relation), object_probs (K, 2)
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from tokenizers import Tokenizer

from ..model.extractor import identity, open_export
from ..model.schema import ENCODER_FILE, OBJECTS_FILE, ExportInfo, ExtractorConfig
from ..model.tokenize import TOKENIZER_FILE, encode_windows, load_tokenizer, pad
from .network import EncoderGraph, ObjectsGraph, PointerExtractor, load_extractor, torch_extractor

PRECISIONS = ("fp32", "fp16", "int8")
OPSET = 17
FP32_TOLERANCE = 1e-4
CALIBRATION_TEXTS = 512  # sentences whose activations set int8's scales
ALL_POSITIONS = torch.tensor([-1.0, -1.0])  # thresholds that let graph 2 return every position


def sample_inputs(
    vocab_size: int, batch: int, length: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ids with ragged padding, and one subject per row: enough to catch shape-frozen graphs."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        attention_mask[row, max(2, length - 3 * row) :] = 0
    subjects = torch.tensor([[row, 1, min(2, length - 1)] for row in range(batch)], dtype=torch.long)
    return input_ids, attention_mask, subjects


def export_graphs(model: PointerExtractor, folder: Path) -> None:
    # the eager attention graph is the pattern ONNX Runtime's optimiser fuses into one Attention op
    model.encoder.set_attn_implementation("eager")
    input_ids, attention_mask, subjects = sample_inputs(model.encoder.config.vocab_size, 2, 16, seed=0)
    with torch.no_grad():
        hidden, _ = model.encode(input_ids, attention_mask)
    torch.onnx.export(
        EncoderGraph(model),
        (input_ids, attention_mask),
        str(folder / ENCODER_FILE),
        input_names=["input_ids", "attention_mask"],
        output_names=["hidden", "subject_probs"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "hidden": {0: "batch", 1: "sequence"},
            "subject_probs": {0: "batch", 1: "sequence"},
        },
        opset_version=OPSET,
        dynamo=False,
    )
    with warnings.catch_warnings():  # about negative indices; subject indices never are
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        export_objects(model, hidden, subjects, folder)
    model.eval()  # tracing can leave modules in training mode


def export_objects(model: PointerExtractor, hidden: torch.Tensor, subjects: torch.Tensor, folder: Path) -> None:
    torch.onnx.export(
        ObjectsGraph(model),
        (hidden, subjects, ALL_POSITIONS),
        str(folder / OBJECTS_FILE),
        input_names=["hidden", "subjects", "thresholds"],
        output_names=["object_positions", "object_probs"],
        dynamic_axes={
            "hidden": {0: "batch", 1: "sequence"},
            "subjects": {0: "subjects"},
            "object_positions": {0: "candidates"},
            "object_probs": {0: "candidates"},
        },
        opset_version=OPSET,
        dynamo=False,
    )


def optimize_encoder(path: Path, model: PointerExtractor, precision: str) -> dict[str, int]:
    """ONNX Runtime's transformer fusions (attention, skip-LayerNorm, GELU...), then fp16 or int8."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.encoder.config
    optimized = optimize_model(
        str(path),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        use_gpu=precision == "fp16",  # fusions meant for the CUDA kernels that will run them
    )
    fusions = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
    if precision == "fp16":
        # keep_io_types: callers feed int64 ids and read float32. ONNX Runtime's own block list stays in
        # force (operators without fp16 kernels); the fused SkipLayerNormalization and Attention take
        # fp16 and accumulate in fp32 inside their CUDA kernels.
        optimized.convert_float_to_float16(keep_io_types=True)
    optimized.save_model_to_file(str(path))
    return fusions


def calibration_feeds(
    tokenizer: Tokenizer, config: ExtractorConfig, texts: list[str], batch_size: int = 16
) -> list[dict[str, np.ndarray]]:
    """The encoder's inputs for ``texts``, cut into windows as the extractor cuts them, in padded batches."""
    windows = [w.ids for ws in encode_windows(tokenizer, texts, config.max_length, config.window_stride) for w in ws]
    windows.sort(key=len)  # batches of similar length, as the extractor forms them
    feeds = []
    for begin in range(0, len(windows), batch_size):
        input_ids, attention_mask = pad(windows[begin : begin + batch_size])
        feeds.append({"input_ids": input_ids, "attention_mask": attention_mask})
    return feeds


def quantize(path: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Static int8 of the encoder's matrix multiplications, for CPU: the activations' scales are calibrated
    once, on ``feeds``, and stored in the graph, so that a text's output does not depend on the texts
    batched beside it (dynamic int8 takes one scale per batch: benchmarks/int8.py)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.rest, None)

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / path.name
        logging.disable(logging.WARNING)
        try:
            quantize_static(
                str(path),
                str(target),
                Feeds(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                per_channel=True,  # one scale per output column of each weight matrix
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused ops have no inferred types
            )
        finally:
            logging.disable(logging.NOTSET)
        shutil.move(target, path)


def check_parity(
    model: PointerExtractor, folder: Path, tolerance: float | None, provider: str = "CPUExecutionProvider"
) -> float:
    """Largest difference between ONNX and PyTorch probabilities over several batch sizes and lengths."""
    encoder = ort.InferenceSession(str(folder / ENCODER_FILE), providers=[provider])
    objects = ort.InferenceSession(str(folder / OBJECTS_FILE), providers=[provider])
    differences = []
    for seed, (batch, length) in enumerate([(1, 5), (2, 16), (3, 37), (8, 64), (1, 128)]):
        input_ids, attention_mask, subjects = sample_inputs(model.encoder.config.vocab_size, batch, length, seed)
        with torch.no_grad():
            hidden, expected_subjects = EncoderGraph(model)(input_ids, attention_mask)
            _, expected_objects = ObjectsGraph(model)(hidden, subjects, ALL_POSITIONS)
        onnx_hidden, onnx_subjects = encoder.run(
            None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        )
        feed = {"hidden": onnx_hidden, "subjects": subjects.numpy(), "thresholds": ALL_POSITIONS.numpy()}
        positions, onnx_objects = objects.run(None, feed)
        valid = attention_mask.numpy().astype(bool)
        differences.append(np.abs(onnx_subjects - expected_subjects.numpy())[valid])
        every_position = len(subjects) * length * model.num_relations
        if len(onnx_objects) != every_position or len(expected_objects) != every_position:
            differences.append(np.array([np.nan]))  # a NaN probability passes no threshold, even -1
            continue
        inside = valid[subjects.numpy()[positions[:, 0], 0], positions[:, 1]]
        differences.append(np.abs(onnx_objects - expected_objects.numpy())[inside])
    # numpy's max, not Python's: max(0.0, nan, 0.2) is 0.2
    worst = float(np.max(np.concatenate(differences), initial=0.0))
    if not np.isfinite(worst) or worst > 1:
        raise ValueError(
            f"ONNX probabilities are not finite numbers in [0, 1] (difference {worst}); the export is broken"
        )
    if tolerance is not None and worst > tolerance:
        raise ValueError(
            f"ONNX probabilities differ from PyTorch by {worst:.2e} (allowed {tolerance:.0e}); the export is not usable"
        )
    return worst


def check_triples(checkpoint: Path, folder: Path, texts: list[str], provider: str) -> dict[str, int]:
    """Decisions at the thresholds on real sentences: the export's triples against PyTorch's."""
    reference = torch_extractor(checkpoint).extract_all(texts)
    found = open_export(folder, provider).extract_all(texts)
    expected = [{identity(t) for t in r.triples} for r in reference]
    got = [{identity(t) for t in f.triples} for f in found]
    return {
        "sentences": len(texts),
        "identical_sentences": sum(e == g for e, g in zip(expected, got)),
        "pytorch_triples": sum(map(len, expected)),
        "export_triples": sum(map(len, got)),
        "shared_triples": sum(len(e & g) for e, g in zip(expected, got)),
    }


def export(
    checkpoint: Path,
    output: Path,
    precision: str = "fp32",
    log: Callable[[str], None] = print,
    check_texts: list[str] | None = None,
    calibration_texts: list[str] | None = None,
) -> ExportInfo:
    """Write a self-contained export folder; fails when the graphs do not match PyTorch.

    fp32 is held to a tolerance on the probabilities. Reduced precision is judged by its decisions on
    real sentences (``check_texts``): on random ids its probabilities may drift far for no harm. int8
    takes its activation scales from ``calibration_texts`` (up to ``CALIBRATION_TEXTS`` of them)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and not calibration_texts:
        raise ValueError("int8 sets its activation scales on real sentences: give some (--calibration-data FILE)")
    model, config = load_extractor(checkpoint)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    log("1/4 tracing the two graphs")
    export_graphs(model, output)
    log("2/4 checking fp32 graphs against PyTorch")
    difference = check_parity(model, output, FP32_TOLERANCE)
    log(f"    max abs difference {difference:.2e}")
    log("3/4 optimising (transformer fusions)" + (f" and converting to {precision}" if precision != "fp32" else ""))
    fusions = optimize_encoder(output / ENCODER_FILE, model, precision)
    calibration = None
    if precision == "int8":
        texts = calibration_texts[:CALIBRATION_TEXTS]
        log(f"    calibrating int8 on {len(texts)} sentences")
        quantize(output / ENCODER_FILE, calibration_feeds(load_tokenizer(Path(checkpoint)), config, texts))
        calibration = {"sentences": len(texts), "sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    log(f"    fusions: {', '.join(f'{name} {count}' for name, count in fusions.items()) or 'none'}")
    shutil.copy(Path(checkpoint) / TOKENIZER_FILE, output / TOKENIZER_FILE)
    config.export = ExportInfo(precision, fusions, difference, None, ort.__version__, calibration=calibration)
    config.save(output)
    provider = "cuda" if precision == "fp16" else "cpu"
    if precision == "fp16" and "CUDAExecutionProvider" not in ort.get_available_providers():
        log("4/4 skipped: fp16 graphs are meant for CUDA, which is not available here")
    elif precision == "fp32":
        log("4/4 checking the final graphs against PyTorch")
        config.export.final_max_difference = check_parity(model, output, FP32_TOLERANCE)
        log(f"    max abs difference {config.export.final_max_difference:.2e}")
    elif check_texts:
        log(f"4/4 comparing {precision} triples with PyTorch's on {len(check_texts)} sentences ({provider})")
        config.export.triples_check = check_triples(checkpoint, output, check_texts, provider)
        check = config.export.triples_check
        log(
            f"    identical triples in {check['identical_sentences']}/{check['sentences']} sentences; "
            f"{check['shared_triples']} of {check['pytorch_triples']} PyTorch triples kept"
        )
    else:
        log(
            f"4/4 skipped: give sentences (triplex export --check-data FILE) to compare {precision} with PyTorch, "
            "or measure its F1 with triplex evaluate"
        )
    config.save(output)
    return config.export
