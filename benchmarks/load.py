"""Load test: the real server on loopback, driven by an asyncio HTTP client at several concurrencies.

    python benchmarks/load.py --export runs/exports/webnlg-fp32 --shared ../shared [--seconds 10]

For each setting (dynamic batching, and batching disabled with TRIPLEX_MAX_BATCH_SIZE=1) it starts
`python -m service`, sends WebNLG* dev sentences one per request at concurrency 1, 8, 32 and 64 for
--seconds each, and records throughput and p50/p99 latency. Then it times the engine alone at the
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
from common import ROOT, machine, merge_results

from service.engine import Engine

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


def batch_totals(metrics: str) -> tuple[float, float]:
    """(windows, batches) the server has run so far."""
    windows = float(re.search(r"^triplex_batch_windows_sum (\S+)$", metrics, re.M).group(1))
    batches = float(re.search(r"^triplex_batch_windows_count (\S+)$", metrics, re.M).group(1))
    return windows, batches


async def drive(url: str, texts: list[str], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        windows_before, batches_before = batch_totals((await client.get("/metrics")).text)

        async def worker(offset: int) -> None:
            nonlocal errors
            index = offset
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await client.post("/v1/extract", json={"text": texts[index % len(texts)]})
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                index += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
        elapsed = time.perf_counter() - began
        windows_after, batches_after = batch_totals((await client.get("/metrics")).text)
    latencies.sort()
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "requests": len(latencies),
        "errors": errors,
        "mean_batch_size": round((windows_after - windows_before) / max(1, batches_after - batches_before), 2),
    }


def engine_alone(export: Path, texts: list[str], batch: int, seconds: float) -> dict:
    engine = Engine(export, "cpu", batch_size=batch)
    windows = engine.extractor.windows(texts)
    engine.extractor.extract_windows(windows[:batch])
    done, latencies, began = 0, [], time.perf_counter()
    while time.perf_counter() - began < seconds:
        chunk = [windows[(done + i) % len(windows)] for i in range(batch)]
        started = time.perf_counter()
        engine.extractor.extract_windows(chunk)
        latencies.append(time.perf_counter() - started)
        done += batch
    return {
        "sentences_per_s": round(done / (time.perf_counter() - began), 1),
        "batch_latency_p50_ms": round(1000 * statistics.median(latencies), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=Path("runs/exports/webnlg-fp32"))
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    dev = json.loads((args.shared / "data/webnlg_star_casrel/dev_triples.json").read_text())
    texts = [item["text"] for item in dev]

    result: dict = {"export": str(args.export), "device": f"CPU only: {machine()}", "seconds_per_level": args.seconds}
    for name, env in (("batching", {}), ("no_batching", {"TRIPLEX_MAX_BATCH_SIZE": "1"})):
        port = free_port()
        server = start_server(args.export, port, env)
        try:
            result[name] = {}
            for concurrency in LEVELS:
                figures = asyncio.run(drive(f"http://127.0.0.1:{port}", texts, concurrency, args.seconds))
                result[name][f"c{concurrency}"] = figures
                print(name, concurrency, figures, flush=True)
        finally:
            server.terminate()
            server.wait()
    result["engine_alone"] = {}
    for concurrency in LEVELS:
        batch = max(1, round(result["batching"][f"c{concurrency}"]["mean_batch_size"]))
        result["engine_alone"][f"batch{batch}"] = engine_alone(args.export, texts, batch, args.seconds / 2)
        print("engine", batch, result["engine_alone"][f"batch{batch}"], flush=True)
    best = max(result["engine_alone"].values(), key=lambda figures: figures["sentences_per_s"])
    result["batching_vs_none_at_c32"] = round(
        result["batching"]["c32"]["requests_per_s"] / result["no_batching"]["c32"]["requests_per_s"], 2
    )
    result["server_vs_engine_alone"] = round(
        max(level["requests_per_s"] for level in result["batching"].values()) / best["sentences_per_s"], 2
    )
    batch1 = engine_alone(args.export, texts, 1, args.seconds / 2)
    result["p99_c1_minus_engine_batch1_p50_ms"] = round(
        result["batching"]["c1"]["p99_ms"] - batch1["batch_latency_p50_ms"], 2
    )
    merge_results("load", {"cpu": result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
