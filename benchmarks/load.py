"""Load test: the real server on loopback, driven by an asyncio HTTP client at several concurrencies.

    python benchmarks/load.py --export runs/exports/webnlg-fp32 --shared ../shared [--seconds 10] [--repeats 3]

For each setting (dynamic batching, and batching disabled with TRIPLEX_MAX_BATCH_SIZE=1) it starts
`python -m service`, sends WebNLG* dev sentences one per request at concurrency 1, 8, 32 and 64 for
--seconds each, and records throughput and p50/p99 latency (each figure the median of --repeats runs).
Then it times the engine alone at the
mean batch sizes the server formed. Writes benchmarks/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvloop
from common import ROOT, machine, merge_results

from model.engine import Engine

LEVELS = (1, 8, 32, 64)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(export: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIPLEX_PROVIDER": "cpu", **extra_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--model", str(export), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become ready")


def batch_totals(metrics: str) -> tuple[float, float, float]:
    """(windows, batches, sum of padding ratios) the server has run so far."""

    def value(name: str) -> float:
        return float(re.search(rf"^{name} (\S+)$", metrics, re.M).group(1))

    return (
        value("triplex_batch_windows_sum"),
        value("triplex_batch_windows_count"),
        value("triplex_batch_padding_ratio_sum"),
    )


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator shares the cores with the server, so it
    must cost as little CPU per request as possible (httpx costs about as much as the server does)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, path: str, payload: dict) -> int:
        body = json.dumps(payload).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status


async def drive(port: int, texts: list[str], concurrency: int, seconds: float) -> dict:
    url = f"http://127.0.0.1:{port}"
    windows_before, batches_before, padding_before = batch_totals(httpx.get(f"{url}/metrics").text)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal errors
        connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        index = offset
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status = await connection.post("/v1/extract", {"text": texts[index % len(texts)]})
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            index += concurrency
        connection.writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
    elapsed = time.perf_counter() - began
    windows_after, batches_after, padding_after = batch_totals(httpx.get(f"{url}/metrics").text)
    batches = max(1, batches_after - batches_before)
    latencies.sort()
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "requests": len(latencies),
        "errors": errors,
        "mean_batch_size": round((windows_after - windows_before) / batches, 2),
        "mean_padding_ratio": round((padding_after - padding_before) / batches, 3),
    }


def engine_alone(export: Path, texts: list[str], batch: int, seconds: float, by_length: bool = True) -> dict:
    """The engine alone at this batch size. ``by_length``: its best case, sentences sorted by length so
    that batches carry the least padding (the server matches lengths only among queued requests);
    otherwise batches of sentences in dev-set order, as they would come from clients."""
    engine = Engine(export, "cpu", batch_size=batch)
    windows = engine.extractor.windows(texts)
    if by_length:
        windows.sort(key=lambda text_windows: len(text_windows[0].ids))
    engine.extractor.extract_windows(windows[:batch])
    done, latencies, began = 0, [], time.perf_counter()
    while time.perf_counter() - began < seconds:
        chunk = [windows[(done + i) % len(windows)] for i in range(batch)]
        started = time.perf_counter()
        engine.extractor.extract_windows(chunk)
        latencies.append(time.perf_counter() - started)
        done += batch
    latencies.sort()
    return {
        "sentences_per_s": round(done / (time.perf_counter() - began), 1),
        "batch_latency_p50_ms": round(1000 * statistics.median(latencies), 2),
        "batch_latency_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
    }


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over repeated runs, and the throughput of every run."""
    rate = "requests_per_s" if "requests_per_s" in runs[0] else "sentences_per_s"
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]} | {
        "runs": [run[rate] for run in runs]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=Path("runs/exports/webnlg-fp32"))
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--levels", type=int, nargs="+", default=LEVELS, help="concurrency levels")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    args = parser.parse_args()
    dev = json.loads((args.shared / "data/webnlg_star_casrel/dev_triples.json").read_text())
    texts = [item["text"] for item in dev]

    result: dict = {
        "export": str(args.export),
        "device": f"CPU only: {machine()}",
        "seconds_per_level": args.seconds,
        "repeats": args.repeats,
    }
    for name, env in (("batching", {}), ("no_batching", {"TRIPLEX_MAX_BATCH_SIZE": "1"})):
        port = free_port()
        server = start_server(args.export, port, env)
        try:
            result[name] = {}
            for concurrency in args.levels:
                runs = [uvloop.run(drive(port, texts, concurrency, args.seconds)) for _ in range(args.repeats)]
                figures = median_of(runs)
                result[name][f"c{concurrency}"] = figures
                print(name, concurrency, figures, flush=True)
        finally:
            server.terminate()
            server.wait()
    result["engine_alone"], result["engine_alone_dev_order"] = {}, {}
    for concurrency in args.levels:
        batch = max(1, round(result["batching"][f"c{concurrency}"]["mean_batch_size"]))
        for key, by_length in (("engine_alone", True), ("engine_alone_dev_order", False)):
            runs = [engine_alone(args.export, texts, batch, args.seconds / 2, by_length) for _ in range(args.repeats)]
            result[key][f"batch{batch}"] = median_of(runs)
            print(key, batch, result[key][f"batch{batch}"], flush=True)
    best = max(result["engine_alone"].values(), key=lambda figures: figures["sentences_per_s"])
    best_dev_order = max(result["engine_alone_dev_order"].values(), key=lambda figures: figures["sentences_per_s"])
    result["batching_vs_none_at_c32"] = round(
        result["batching"]["c32"]["requests_per_s"] / result["no_batching"]["c32"]["requests_per_s"], 2
    )
    server_best = max(level["requests_per_s"] for level in result["batching"].values())
    result["server_vs_engine_alone"] = round(server_best / best["sentences_per_s"], 2)
    result["server_vs_engine_alone_dev_order"] = round(server_best / best_dev_order["sentences_per_s"], 2)
    # the same sentences one at a time: the server's p99 against the engine's p99 (long sentences make
    # both tails) and against its p50
    batch1 = median_of([engine_alone(args.export, texts, 1, args.seconds) for _ in range(args.repeats)])
    result["engine_alone_batch1_full"] = batch1
    for percentile in ("p99", "p50"):
        result[f"p99_c1_minus_engine_batch1_{percentile}_ms"] = round(
            result["batching"]["c1"]["p99_ms"] - batch1[f"batch_latency_{percentile}_ms"], 2
        )
    merge_results("load", {"cpu": result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
