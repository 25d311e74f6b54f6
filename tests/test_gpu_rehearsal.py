"""The GPU program (benchmarks/gpu/run.py) rehearsed on the CPU with a tiny model: every stage runs and
fills every figure the GPU run fills, so that the first run on the GPU machine does not die on a typo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from triplex.model.schema import write_schema
from triplex.training.data import write_jsonl

from .conftest import ROOT
from .sample import RELATIONS, generate

KEYS = {
    "environment": {"torch", "onnxruntime", "available_providers", "session_providers"},
    "training": {"epochs", "seconds", "cpu_same_epochs"},
    "exports": {"fp32", "fp16", "bert_base"},
    "parity": {"fp32", "fp16", "fp16_loss_points", "identical_sentences_share", "fp32_provider", "fp16_provider"},
    "engine": {"minilm_dev", "bert_base_64_tokens", "bert_base_128_tokens", "peak_fp16_flops"},
    "server": {"bert_base --workers 2", "minilm --workers 2"},
    "baseline": {"load", "pytorch_eager_fastapi", "triplex_serve", "ratio"},
    "tests": {"exit_code", "summary"},
}


def test_the_gpu_program_rehearses_every_stage_on_the_cpu(tiny_encoder: Path, tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (make wrk): the server stages need it")
    write_jsonl(generate(48, seed=11), tmp_path / "train.jsonl")
    write_jsonl(generate(24, seed=12), tmp_path / "dev.jsonl")
    write_schema(tmp_path / "schema.jsonl", RELATIONS)
    out = tmp_path / "rehearsal.json"
    command = [sys.executable, str(ROOT / "benchmarks/gpu/run.py"), "--rehearse", "--out", str(out),
               "--encoder", str(tiny_encoder), "--train", str(tmp_path / "train.jsonl"),
               "--dev", str(tmp_path / "dev.jsonl"), "--schema", str(tmp_path / "schema.jsonl"),
               "--work", str(tmp_path / "work")]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert list(results) == list(KEYS)
    for stage, keys in KEYS.items():
        assert "error" not in results[stage], (stage, results[stage].get("traceback"))
        assert keys <= set(results[stage]) and results[stage]["device"] == "cpu", (stage, sorted(results[stage]))
    assert results["training"]["epochs"] and results["parity"]["fp32"]["partial_f1"] > 0.3, results["parity"]
    server = results["server"]["bert_base --workers 2"]
    assert all(load["requests_per_s"] > 0 and load["failed"] == 0 for load in server.values()), server
    assert results["tests"]["exit_code"] == 0, results["tests"]
