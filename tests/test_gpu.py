"""GPU tests (``pytest -m gpu tests/test_gpu.py``): the fp16 export, IO binding, and the service on CUDA.
They run on the GPU machine (benchmarks/gpu/run.py, stage ``tests``) and skip wherever CUDA is missing."""

from __future__ import annotations

from pathlib import Path

import httpx
import onnxruntime as ort
import pytest

from triplex.model.extractor import identity, open_export
from triplex.model.runtime import OnnxRuntime
from triplex.model.tokenize import pad
from triplex.training.export import export

from .test_service import TEXTS, start_server, stop

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu and a GPU"
    ),
]


def triples(folder: Path, provider: str) -> list[set]:
    return [{identity(t) for t in found.triples} for found in open_export(folder, provider).extract_all(TEXTS)]


def test_the_fp16_export_decides_as_pytorch_does(trained: tuple[Path, Path], tmp_path: Path) -> None:
    info = export(trained[0], tmp_path / "fp16", "fp16", log=lambda message: None, check_texts=TEXTS)
    check = info.triples_check
    assert check["identical_sentences"] == check["sentences"] == len(TEXTS), check
    assert any(triples(tmp_path / "fp16", "cuda"))


def test_cuda_keeps_the_hidden_states_on_the_device_and_finds_the_cpu_triples(trained: tuple[Path, Path]) -> None:
    runtime = OnnxRuntime(trained[1], "cuda")
    assert runtime.on_gpu and runtime.provider == "CUDAExecutionProvider"
    extractor = open_export(trained[1], "cuda")
    windows = [window for text in extractor.windows(TEXTS[:4]) for window in text]
    hidden, _ = runtime.encode(*pad([window.ids for window in windows]))
    assert isinstance(hidden, ort.OrtValue) and hidden.device_name().lower() == "cuda"
    assert triples(trained[1], "cuda") == triples(trained[1], "cpu")


def test_the_service_serves_on_cuda(trained: tuple[Path, Path]) -> None:
    process, url = start_server(trained[1], TRIPLEX_PROVIDER="cuda")
    try:
        provider = httpx.get(f"{url}/v1/model").json()["provider"]
        answer = httpx.post(f"{url}/v1/extract", json={"texts": TEXTS}, timeout=60)
    finally:
        stop(process)
    assert provider == "CUDAExecutionProvider" and answer.status_code == 200, answer.text
    served = [{spans(t) for t in result["triples"]} for result in answer.json()["results"]]
    cpu = open_export(trained[1], "cpu").extract_all(TEXTS)
    assert served == [{(t.subject.start, t.predicate, t.object.start) for t in found.triples} for found in cpu]


def spans(triple: dict) -> tuple:
    return triple["subject"]["start"], triple["predicate"], triple["object"]["start"]
