"""The baseline: what a user would write without triplex. FastAPI, the checkpoint on PyTorch eager, one
request at a time per call (no batching across requests). Labelled as the baseline in the GPU results.

    BASELINE_CHECKPOINT=DIR BASELINE_DEVICE=cuda uvicorn baseline_app:app --app-dir benchmarks/gpu
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

from triplex.training.network import torch_extractor

extractor = torch_extractor(
    Path(os.environ["BASELINE_CHECKPOINT"]), os.environ.get("BASELINE_DEVICE", "cuda"), batch_size=1
)
app = FastAPI()


class Request(BaseModel):
    text: str


@app.post("/v1/extract")
def extract(request: Request) -> dict:
    return {"results": [extractor.extract_all([request.text])[0].to_dict()]}
