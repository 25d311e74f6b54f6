"""The HTTP service on a tiny exported model: batching, refusals, metrics, a real uvicorn process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest

from triplex.service.app import create_app
from triplex.service.settings import ServiceSettings
from triplex.training.evaluate import thresholds_of

from .conftest import ROOT
from .sample import generate

TEXTS = [example.text for example in generate(24, seed=5)]


def settings(export: Path, **overrides) -> ServiceSettings:
    return ServiceSettings(model_dir=export, provider="cpu", threads=1, engine_socket=None, **overrides)


async def with_client(app, work):
    """Run ``work(client)`` against ``app`` in process, lifespan included."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            return await work(client)


def metric(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_concurrent_requests_are_batched_and_match_single_requests(trained: tuple[Path, Path]) -> None:
    app = create_app(settings(trained[1]))
    # a few texts of several windows each beside the sentences: the engine is busy long enough for the
    # requests that arrive meanwhile to share its next batches (a tiny model outruns single sentences)
    texts = TEXTS + [" ".join(TEXTS[start:] + TEXTS[:start]) for start in range(4)]

    async def work(client: httpx.AsyncClient):
        together = await asyncio.gather(*(client.post("/v1/extract", json={"text": text}) for text in texts))
        alone = [await client.post("/v1/extract", json={"text": text}) for text in texts]
        several = await client.post("/v1/extract", json={"texts": texts})
        return together, alone, several, (await client.get("/metrics")).text

    together, alone, several, metrics = asyncio.run(with_client(app, work))
    assert all(response.status_code == 200 for response in together + alone)
    assert [r.json()["results"] for r in together] == [r.json()["results"] for r in alone]
    assert several.json()["results"] == [r.json()["results"][0] for r in alone]
    batches = metric(metrics, "triplex_batch_texts_count")
    single = metric(metrics, 'triplex_batch_texts_bucket{le="1.0"}')
    assert batches - single > 0, "some batch must hold windows of more than one request"
    assert alone[-1].json()["results"][0]["windows"] > 1
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
            # a lone surrogate, escaped in JSON: valid JSON, not valid text
            "surrogate": await post(
                "/v1/extract", content=b'{"text": "a \\ud800"}', headers={"content-type": "application/json"}
            ),
            "surrogate_in_list": await post(
                "/v1/extract", content=b'{"texts": ["ok", "\\udfff b"]}', headers={"content-type": "application/json"}
            ),
        }

    responses = asyncio.run(with_client(app, work))
    expected = {
        "too_long": 413,
        "too_many": 413,
        "empty_list": 422,
        "wrong_type": 422,
        "both": 422,
        "neither": 422,
        "bad_json": 400,
        "empty_text": 200,
        "surrogate": 422,
        "surrogate_in_list": 422,
    }
    for name, status in expected.items():
        response = responses[name]
        assert response.status_code == status, (name, response.text)
        if status != 200:
            assert set(response.json()["error"]) == {"code", "message"}
    assert "limit is 200" in responses["too_long"].json()["error"]["message"]
    assert responses["empty_text"].json() == {"results": [{"triples": [], "windows": 1}]}
    assert "surrogate" in responses["surrogate"].json()["error"]["message"]


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
    crowded = create_app(settings(trained[1], max_queue=4, max_batch_size=1))
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
    assert schema.json()["examples"], "the web page offers sentences from the dev data"
    card = model.json()
    assert card["training"]["epochs"] and card["training"]["best"]["f1"] >= 0 and card["thresholds"]["start"] > 0
    assert card["export"]["final_max_difference"] is not None and card["version"]
    text = (trained[1] / "README.md").read_text()
    assert "## Dev metrics per epoch" in text and "## Export" in text and "thresholds: start" in text


def test_every_error_is_the_error_object(trained: tuple[Path, Path]) -> None:
    app = create_app(settings(trained[1], max_body_bytes=5000, api_key="s3cret"))
    auth = {"Authorization": "bearer s3cret"}  # the scheme in any letter case
    json_type = {"content-type": "application/json"}
    consumed = []

    async def stream():
        for index in range(100):
            consumed.append(index)
            yield b" " * 1000

    async def work(client: httpx.AsyncClient):
        post = client.post
        return {
            "not_found": (404, await client.get("/nowhere", headers=auth)),
            "method_not_allowed": (405, await client.get("/v1/extract", headers=auth)),
            "unsupported_media_type": (
                415,
                await post("/v1/extract", content=b"text=a", headers=auth | {"content-type": "text/plain"}),
            ),
            "invalid_json": (400, await post("/v1/extract", content=b'{"text": ', headers=auth | json_type)),
            "invalid_utf8": (400, await post("/v1/extract", content=b'{"text": "\xff"}', headers=auth | json_type)),
            "nested": (400, await post("/v1/extract", content=b"[" * 4000, headers=auth | json_type)),
            "declared_too_large": (413, await post("/v1/extract", json={"text": "a" * 6000}, headers=auth)),
            "streamed_too_large": (413, await post("/v1/extract", content=stream(), headers=auth | json_type)),
            "unauthorized_before_validation": (401, await post("/v1/extract", content=b"{", headers=json_type)),
            "authorized": (200, await post("/v1/extract", json={"text": TEXTS[0]}, headers=auth)),
            "openapi": (200, await client.get("/openapi.json")),
        }

    responses = asyncio.run(with_client(app, work))
    for name, (status, response) in responses.items():
        assert response.status_code == status, (name, response.text)
        if status >= 400:
            error = response.json()["error"]
            assert set(error) == {"code", "message"} and len(error["message"]) > 20, (name, error)
    assert "UTF-8" in responses["invalid_utf8"][1].json()["error"]["message"]
    assert "TRIPLEX_MAX_BODY_BYTES" in responses["streamed_too_large"][1].json()["error"]["message"]
    assert len(consumed) < 100, "a body over the limit is refused before it is read whole"
    spec = responses["openapi"][1].json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/extract"]["post"]["security"] == [{"bearer": []}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(export: Path, *flags: str, **variables: str) -> tuple[subprocess.Popen, str]:
    """A real ``triplex serve`` process on loopback, once it is ready."""
    port = free_port()
    env = {**os.environ, "TRIPLEX_PROVIDER": "cpu", "TRIPLEX_THREADS": "1", "PYTHONPATH": str(ROOT), **variables}
    process = subprocess.Popen(
        [sys.executable, "-m", "triplex.service", "--model", str(export), "--port", str(port), *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: teardown stops the workers and the engine too
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            pytest.fail(f"server exited: {process.stdout.read()}")
        time.sleep(0.1)
    stop(process)
    pytest.fail("server did not become ready")


def start_two_workers(export: Path) -> tuple[subprocess.Popen, str]:
    """A ``--workers 2`` server once both workers take connections (ready means that the first one does)."""
    process, url = start_server(export, "--workers", "2")
    try:
        until_both_take_turns(process.pid, url)
    except BaseException:
        stop(process)
        raise
    return process, url


def until_both_take_turns(server: int, url: str, gone: Path | None = None) -> None:
    """Wait (up to 60 s) until two front ends, ``gone`` not among them, each answer one of two connections."""
    deadline = time.monotonic() + 60
    while True:
        workers = front_ends(server)
        if len(workers) == 2 and gone not in workers and served_at_once(server, url, 2) == [1, 1]:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"two workers did not take turns: {workers}")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture()
def server(trained: tuple[Path, Path]):
    process, url = start_server(trained[1])
    yield process, url
    stop(process)


@pytest.fixture(scope="module")
def two_workers(trained: tuple[Path, Path]):
    process, url = start_two_workers(trained[1])
    yield process, url
    stop(process)


def test_a_client_that_leaves_has_its_request_dropped(server) -> None:
    _, url = server
    body = json.dumps({"texts": [" ".join(TEXTS) * 3] * 48}).encode()  # thousands of windows: seconds of work
    head = f"POST /v1/extract HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as connection:
        connection.sendall(head.encode() + b"\r\n\r\n" + body)
        time.sleep(0.5)  # queued in the engine by now
    left = 'triplex_requests_total{route="/v1/extract",status="499"}'
    for _ in range(100):  # the front end notices, answers 499 to no one and frees the engine of the rest
        metrics = httpx.get(f"{url}/metrics").text
        if metric(metrics, left) == 1 and metric(metrics, "triplex_queue_depth") == 0:
            break
        time.sleep(0.05)
    assert metric(metrics, left) == 1 and metric(metrics, "triplex_queue_depth") == 0
    assert httpx.post(f"{url}/v1/extract", json={"text": TEXTS[0]}).status_code == 200


def test_two_workers_batch_together_and_match_the_cli(two_workers, trained: tuple[Path, Path], tmp_path: Path):
    _, url = two_workers
    extracted = 'triplex_requests_total{route="/v1/extract",status="200"}'
    before = metric(httpx.get(f"{url}/metrics").text, extracted)  # the start's check that both take turns

    async def load():
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            # a few texts of several windows keep the engine busy while the sentences arrive
            long_texts = [" ".join(TEXTS[start:] + TEXTS[:start]) for start in range(8)]
            return await asyncio.gather(*(client.post("/v1/extract", json={"text": t}) for t in TEXTS * 4 + long_texts))

    responses = asyncio.run(load())
    assert all(response.status_code == 200 for response in responses)
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "triplex",
            "extract",
            "--model",
            str(trained[1]),
            "--device",
            "cpu",
            "--input",
            str(tmp_path / "texts.jsonl"),
            "--output",
            str(tmp_path / "out.jsonl"),
        ],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
    )
    cli = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    served = [response.json()["results"][0] for response in responses[: len(TEXTS)]]
    assert [{"triples": c["triples"], "windows": c["windows"]} for c in cli] == served
    assert any(result["triples"] for result in served)
    metrics = httpx.get(f"{url}/metrics").text
    # both workers' requests are counted, and the one engine formed batches of several requests
    assert metric(metrics, extracted) - before == len(responses)
    assert metric(metrics, "triplex_batch_texts_count") > metric(metrics, 'triplex_batch_texts_bucket{le="1.0"}')


def front_ends(server: int) -> list[Path]:
    """The /proc folders of a ``--workers`` server's front ends."""
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and f"PPid:\t{server}\n" in read(p / "status")]
    return [p for p in children if b"spawn_main" in read_bytes(p / "cmdline")]


def requests_per_worker(server: int) -> list[float]:
    """/v1/extract requests answered by each front end of a ``--workers`` server, from its own metrics file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    workers = front_ends(server)
    environ = dict(v.split(b"=", 1) for v in read_bytes(workers[0] / "environ").split(b"\0") if b"=" in v)
    folder = Path(environ[b"PROMETHEUS_MULTIPROC_DIR"].decode())
    counts = []
    for worker in workers:
        files = [str(path) for path in folder.glob(f"*_{worker.name}.db")]
        samples = [sample for family in MultiProcessCollector.merge(files) for sample in family.samples]
        extract = [s for s in samples if s.name == "triplex_requests_total" and s.labels["route"] == "/v1/extract"]
        counts.append(sum(s.value for s in extract))
    return counts


def served_at_once(server: int, url: str, count: int) -> list[float]:
    """Requests each front end answered of ``count`` connections opened at once, one request on each."""
    before = requests_per_worker(server)
    body = json.dumps({"text": TEXTS[0]}).encode()
    head = f"POST /v1/extract HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    connections = [socket.socket() for _ in range(count)]
    for connection in connections:  # all at once, as a load generator opens its connections
        connection.setblocking(False)
        connection.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    for connection in connections:
        connection.setblocking(True)
        connection.sendall(head.encode() + b"\r\n\r\n" + body)
    for connection in connections:
        assert connection.recv(12) == b"HTTP/1.1 200"
        connection.close()
    # a worker counts a request once its answer is sent, so the last count may come just after the answer
    deadline = time.monotonic() + 5
    while True:
        served = [after - earlier for after, earlier in zip(requests_per_worker(server), before, strict=True)]
        if sum(served) >= count or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


def read_bytes(path: Path) -> bytes:
    with contextlib.suppress(OSError):
        return path.read_bytes()
    return b""


def read(path: Path) -> str:
    return read_bytes(path).decode(errors="replace")


def test_two_workers_share_the_connections_evenly(two_workers) -> None:
    """Connections opened together reach the workers in turn: two connections one each, 64 half each."""
    process, url = two_workers
    for count in (2, 64):
        assert served_at_once(process.pid, url, count) == [count // 2] * 2


def test_a_killed_worker_is_replaced_and_takes_its_turn_again(trained: tuple[Path, Path]) -> None:
    process, url = start_two_workers(trained[1])
    try:
        killed = front_ends(process.pid)[0]
        os.kill(int(killed.name), signal.SIGKILL)
        for _ in range(8):  # meanwhile the other worker takes every connection
            assert httpx.post(f"{url}/v1/extract", json={"text": TEXTS[0]}).status_code == 200
        until_both_take_turns(process.pid, url, gone=killed)  # uvicorn starts another; once ready, it takes turns
    finally:
        stop(process)


def test_a_connection_handed_to_a_worker_that_dies_before_taking_it_is_served_by_another(
    trained: tuple[Path, Path],
) -> None:
    """The acceptor keeps each connection until its worker takes it: one handed to a stopped worker, which
    is then killed, is answered by the other worker."""
    process, url = start_two_workers(trained[1])
    try:
        stopped = int(front_ends(process.pid)[0].name)
        os.kill(stopped, signal.SIGSTOP)
        with ThreadPoolExecutor(2) as pool:  # two connections: one to each worker
            body = {"text": TEXTS[0]}
            answers = [pool.submit(httpx.post, f"{url}/v1/extract", json=body, timeout=60) for _ in range(2)]
            done, waiting = wait(answers, timeout=60, return_when=FIRST_COMPLETED)
            assert len(done) == 1 and len(waiting) == 1  # the stopped worker's connection waits
            with contextlib.suppress(ProcessLookupError):  # uvicorn may have ended the unresponsive worker
                os.kill(stopped, signal.SIGKILL)
            assert [answer.result().status_code for answer in answers] == [200, 200]
    finally:
        stop(process)


def test_a_provider_that_cannot_load_stops_the_start_with_one_line(trained: tuple[Path, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "triplex.service", "--model", str(trained[1]), "--provider", "cuda", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("triplex: error:")]
    assert len(lines) == 1 and "cuda" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_loses_no_accepted_request(trained: tuple[Path, Path], workers: int) -> None:
    process, url = start_server(trained[1], "--workers", str(workers))

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            requests = [asyncio.create_task(client.post("/v1/extract", json={"texts": TEXTS})) for _ in range(40)]
            await asyncio.sleep(0.3)  # some answered, some accepted and queued, then the signal
            process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*requests, return_exceptions=True)

    try:
        responses = asyncio.run(burst())
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status says SIGTERM
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        stop(process)
    answered = [r for r in responses if isinstance(r, httpx.Response)]
    assert answered and all(r.status_code == 200 for r in answered)  # every accepted request is answered
    assert all(isinstance(r, httpx.ConnectError) for r in responses if not isinstance(r, httpx.Response))
    log = process.stdout.read()
    assert log.count("Finished server process") == workers and "Waiting for application shutdown" in log
    assert "Traceback" not in log


def test_schemathesis_finds_nothing_the_schema_does_not_allow(server) -> None:
    _, url = server
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
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


def test_json_log_lines(trained: tuple[Path, Path]) -> None:
    process, url = start_server(trained[1], TRIPLEX_LOG_FORMAT="json")
    httpx.get(f"{url}/health/live")
    stop(process)
    lines = [line for line in process.stdout.read().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("Application startup complete" in record["message"] for record in records)
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)


def test_thresholds_chosen_on_dev_reach_the_export_and_the_service(trained: tuple[Path, Path]) -> None:
    checkpoint, export = (json.loads((folder / "extractor.json").read_text()) for folder in trained)
    chosen = checkpoint["training"]["thresholds"]
    assert chosen["chosen"] == "on dev" and checkpoint["thresholds"] == export["thresholds"]
    assert checkpoint["thresholds"] == thresholds_of(chosen)
    best = max(row["f1"] for row in chosen["tried"])
    assert next(r for r in chosen["tried"] if thresholds_of(r) == thresholds_of(chosen))["f1"] == best

    async def work(client: httpx.AsyncClient):
        model = (await client.get("/v1/model")).json()
        found = (await client.post("/v1/extract", json={"texts": TEXTS})).json()["results"]
        return model["thresholds"], sum(len(result["triples"]) for result in found)

    own = asyncio.run(with_client(create_app(settings(trained[1])), work))
    strict = asyncio.run(with_client(create_app(settings(trained[1], thresholds="0.999,0.999")), work))
    assert own[0] == export["thresholds"] and strict[0] == {"start": 0.999, "end": 0.999}
    assert own[1] > strict[1], "the engine decodes at the thresholds the setting gives"


def test_every_v1_answer_validates_against_the_published_schema(trained: tuple[Path, Path]) -> None:
    """The bodies the routes send (``/v1/extract`` writes its JSON itself) hold to the OpenAPI schema."""
    import jsonschema

    async def work(client: httpx.AsyncClient):
        spec = (await client.get("/openapi.json")).json()
        answers = [
            ("/v1/extract", "post", await client.post("/v1/extract", json={"texts": TEXTS})),
            ("/v1/extract", "post", await client.post("/v1/extract", json={"text": TEXTS[0]})),
            ("/v1/extract", "post", await client.post("/v1/extract", json={"text": "a", "texts": ["b"]})),
            ("/v1/extract", "post", await client.post("/v1/extract", json={"texts": ["x" * 200_000]})),
            ("/v1/schema", "get", await client.get("/v1/schema")),
            ("/v1/model", "get", await client.get("/v1/model")),
        ]
        return spec, answers

    spec, answers = asyncio.run(with_client(create_app(settings(trained[1])), work))
    assert [response.status_code for *_, response in answers] == [200, 200, 422, 413, 200, 200]
    assert any(result["triples"] for result in answers[0][2].json()["results"])
    for path, method, response in answers:
        declared = spec["paths"][path][method]["responses"][str(response.status_code)]
        schema = declared["content"]["application/json"]["schema"] | {"components": spec["components"]}
        jsonschema.validate(response.json(), schema)  # raises, naming the field, when a body does not
    request_schema = spec["components"]["schemas"]["ExtractRequest"]
    with pytest.raises(jsonschema.ValidationError):  # the schema says "exactly one of", as the server does
        jsonschema.validate({"text": "a", "texts": ["b"]}, request_schema)
