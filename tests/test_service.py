"""The HTTP service on a tiny exported model: batching, refusals, metrics, a real uvicorn process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.batcher import Batcher
from service.engine import Engine
from service.metrics import Metrics
from service.settings import Settings
from training.sample import generate

from .conftest import ROOT

TEXTS = [example.text for example in generate(24, seed=5)]


def settings(export: Path, **overrides) -> Settings:
    return Settings(model_dir=export, provider="cpu", threads=1, **overrides)


async def with_client(app, work):
    """Run ``work(client)`` against ``app`` in process, lifespan included."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            return await work(client)


def metric(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_concurrent_requests_are_batched_and_match_single_requests(trained: tuple[Path, Path]) -> None:
    app = create_app(settings(trained[1], max_wait_ms=20))

    async def work(client: httpx.AsyncClient):
        together = await asyncio.gather(*(client.post("/v1/extract", json={"text": text}) for text in TEXTS))
        alone = [await client.post("/v1/extract", json={"text": text}) for text in TEXTS]
        several = await client.post("/v1/extract", json={"texts": TEXTS})
        return together, alone, several, (await client.get("/metrics")).text

    together, alone, several, metrics = asyncio.run(with_client(app, work))
    assert all(response.status_code == 200 for response in together + alone)
    assert [r.json()["results"] for r in together] == [r.json()["results"] for r in alone]
    assert several.json()["results"] == [r.json()["results"][0] for r in alone]
    batches = metric(metrics, "triplex_batch_texts_count")
    single = metric(metrics, 'triplex_batch_texts_bucket{le="1.0"}')
    assert batches - single > 0, "some batch must hold more than one text"
    first = alone[0].json()["results"][0]
    assert first["windows"] == 1 and first["triples"]
    for triple in first["triples"]:
        entity = triple["subject"]
        assert TEXTS[0][entity["start"] : entity["end"]] == entity["text"]


def test_refusals(trained: tuple[Path, Path]) -> None:
    app = create_app(settings(trained[1], max_text_chars=200, max_texts=3))

    async def work(client: httpx.AsyncClient):
        post = client.post
        return {
            "too_long": await post("/v1/extract", json={"text": "x" * 201}),
            "too_many": await post("/v1/extract", json={"texts": ["a", "b", "c", "d"]}),
            "empty_list": await post("/v1/extract", json={"texts": []}),
            "wrong_type": await post("/v1/extract", json={"text": 5}),
            "both": await post("/v1/extract", json={"text": "a", "texts": ["b"]}),
            "neither": await post("/v1/extract", json={}),
            "bad_json": await post("/v1/extract", content=b"{not json", headers={"content-type": "application/json"}),
            "empty_text": await post("/v1/extract", json={"text": "   "}),
        }

    responses = asyncio.run(with_client(app, work))
    expected = {
        "too_long": 413,
        "too_many": 413,
        "empty_list": 422,
        "wrong_type": 422,
        "both": 422,
        "neither": 422,
        "bad_json": 422,
        "empty_text": 200,
    }
    for name, status in expected.items():
        response = responses[name]
        assert response.status_code == status, (name, response.text)
        if status != 200:
            assert set(response.json()["error"]) == {"code", "message"}
    assert "limit is 200" in responses["too_long"].json()["error"]["message"]
    assert responses["empty_text"].json() == {"results": [{"triples": [], "windows": 1}]}


def test_api_key(trained: tuple[Path, Path]) -> None:
    app = create_app(settings(trained[1], api_key="s3cret"))

    async def work(client: httpx.AsyncClient):
        body = {"text": TEXTS[0]}
        return (
            await client.post("/v1/extract", json=body),
            await client.post("/v1/extract", json=body, headers={"Authorization": "Bearer wrong"}),
            await client.post("/v1/extract", json=body, headers={"Authorization": "Bearer s3cret"}),
            await client.get("/health/ready"),
        )

    missing, wrong, right, ready = asyncio.run(with_client(app, work))
    assert missing.status_code == wrong.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200 and ready.status_code == 200  # health stays open for probes


def test_queue_full_gives_429_and_deadline_gives_504(trained: tuple[Path, Path]) -> None:
    crowded = create_app(settings(trained[1], max_queue=1, max_batch_size=1))
    long_text = " ".join(TEXTS) * 3

    async def burst(client: httpx.AsyncClient):
        return await asyncio.gather(*(client.post("/v1/extract", json={"text": long_text}) for _ in range(12)))

    responses = asyncio.run(with_client(crowded, burst))
    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 200 and 429 in statuses and set(statuses) <= {200, 429}
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "queue_full"

    hurried = create_app(settings(trained[1], request_timeout_s=0.001))

    async def late(client: httpx.AsyncClient):  # dozens of windows: far more than 1 ms in the engine
        return await client.post("/v1/extract", json={"text": long_text * 10})

    response = asyncio.run(with_client(hurried, late))
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"


def test_schema_model_and_health(trained: tuple[Path, Path]) -> None:
    app = create_app(settings(trained[1]))

    async def work(client: httpx.AsyncClient):
        return [
            await client.get(path) for path in ("/v1/schema", "/v1/model", "/health/live", "/health/ready", "/docs")
        ]

    schema, model, live, ready, docs = asyncio.run(with_client(app, work))
    assert "born_in" in schema.json()["predicates"] and "person" in schema.json()["entity_types"]
    assert model.json()["precision"] == "fp32" and model.json()["provider"] == "CPUExecutionProvider"
    assert live.status_code == ready.status_code == docs.status_code == 200


def test_batcher_drops_texts_whose_client_left(trained: tuple[Path, Path]) -> None:
    engine = Engine(trained[1], provider="cpu", threads=1)
    seen: list[int] = []

    def run_batch(windows):
        seen.append(len(windows))
        return engine.extractor.extract_windows(windows)

    async def scenario():
        metrics = Metrics()
        batcher = Batcher(run_batch, metrics, max_wait_s=0.05)
        windows = engine.extractor.windows(TEXTS[:4])
        futures = batcher.submit(windows, deadline=time.monotonic() + 10)
        futures[1].cancel()
        futures[2].cancel()
        batcher.start()
        results = await asyncio.gather(futures[0], futures[3])
        await batcher.drain(timeout=5)
        return results, metrics

    results, metrics = asyncio.run(scenario())
    assert seen == [2] and all(result.triples for result in results)
    assert metrics.dropped.labels("cancelled")._value.get() == 2


def test_batcher_groups_queued_texts_by_length_oldest_first(trained: tuple[Path, Path]) -> None:
    engine = Engine(trained[1], provider="cpu", threads=1)
    batches: list[list[int]] = []

    def run_batch(windows):
        batches.append([len(text_windows[0].ids) for text_windows in windows])
        return engine.extractor.extract_windows(windows)

    texts = [" ".join(["Paris"] * words) for words in (2, 20, 3, 19, 10)]

    async def scenario():
        batcher = Batcher(run_batch, Metrics(), max_batch_size=2)
        futures = batcher.submit(engine.extractor.windows(texts), deadline=time.monotonic() + 10)
        batcher.start()
        results = await asyncio.gather(*futures)
        await batcher.drain(timeout=5)
        return results

    results = asyncio.run(scenario())
    lengths = [len(w[0].ids) for w in engine.extractor.windows(texts)]
    # the oldest text leads each batch, joined by the queued text nearest to it in length
    assert batches == [[lengths[0], lengths[2]], [lengths[1], lengths[3]], [lengths[4]]]
    assert [r.windows for r in results] == [1] * 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def server(trained: tuple[Path, Path]):
    """A real ``triplex serve`` process on loopback."""
    port = free_port()
    env = {
        **os.environ,
        "TRIPLEX_PROVIDER": "cpu",
        "TRIPLEX_THREADS": "1",
        "TRIPLEX_MAX_WAIT_MS": "10",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--model", str(trained[1]), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            pytest.fail(f"server exited: {process.stdout.read()}")
        time.sleep(0.1)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


def test_real_server_answers_and_stops_cleanly_on_sigterm(server) -> None:
    process, url = server

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            requests = [asyncio.create_task(client.post("/v1/extract", json={"texts": TEXTS})) for _ in range(20)]
            await asyncio.sleep(0.05)  # some accepted and queued, then the signal
            process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*requests, return_exceptions=True)

    responses = asyncio.run(burst())
    answered = [r for r in responses if isinstance(r, httpx.Response)]
    assert answered and all(r.status_code == 200 for r in answered)  # every accepted request is answered
    assert all(isinstance(r, httpx.ConnectError) for r in responses if not isinstance(r, httpx.Response))
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says SIGTERM
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    log = process.stdout.read()
    assert "Waiting for application shutdown" in log and "Finished server process" in log
    assert "Traceback" not in log


def test_schemathesis_finds_no_server_errors(server) -> None:
    _, url = server
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
