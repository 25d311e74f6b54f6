"""The floor for benchmarks/frontend_cost.py: FastAPI + uvicorn reading the same JSON with orjson and
answering a body of the same shape (no triples), nothing else.

    python -m uvicorn bare_app:app --app-dir benchmarks --port 8001 --no-access-log
"""

import orjson
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/v1/extract")
async def extract(request: Request) -> Response:
    body = orjson.loads(await request.body())
    texts = body["texts"] if "texts" in body else [body["text"]]
    answer = {"results": [{"triples": [], "windows": 1} for _ in texts]}
    return Response(orjson.dumps(answer), media_type="application/json")
