"""Load test: the real server against the engine alone, on the same machine and the same sentences.

    python benchmarks/load.py --export runs/exports/webnlg-int8 --shared ../shared [--seconds 8] [--repeats 3]

Starts `triplex serve` with --workers 1 and with --workers 2 (one engine process behind the HTTP front ends
either way), sends WebNLG* dev sentences one per request at each concurrency for --seconds (with wrk, the
native load generator, when it is installed: `make wrk`; otherwise a minimal keep-alive Python client; both on
the same cores, their CPU per request reported), and reads the mean batch size the engine formed from the
aggregated /metrics. The engine alone is the Python API (`Extractor.extract_all`, tokenization included) on
the same sentences in batches of that mean size, in dev order as clients send them (and sorted by length, its
best case). Runs are interleaved: each repeat measures every setting once; figures are medians over repeats.
Writes benchmarks/results/load.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop
from common import ROOT, machine, merge_results
from wrk import run_wrk, write_script

from triplex.model.extractor import Extractor, open_export

LEVELS = (1, 32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(export: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIPLEX_PROVIDER": "cpu", **extra_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "triplex.service", "--model", str(export), "--port", str(port)],
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


def drive(port: int, texts: list[str], concurrency: int, seconds: float, script: Path | None) -> dict:
    """One load at this concurrency: with wrk when ``script`` is given, else with the Python client."""
    url = f"http://127.0.0.1:{port}"
    windows_before, batches_before, padding_before = batch_totals(httpx.get(f"{url}/metrics").text)
    if script is None:
        started = time.process_time()
        figures = uvloop.run(python_client(port, texts, concurrency, seconds))
        client_cpu = time.process_time() - started
    else:
        summary, client_cpu = run_wrk(script, port, concurrency, seconds)
        figures = {
            "requests_per_s": round(summary["requests"] / summary["seconds"], 1),
            "p50_ms": summary["p50_ms"],
            "p99_ms": summary["p99_ms"],
            "requests": summary["requests"],
            "errors": summary["failed"],
        }
    windows_after, batches_after, padding_after = batch_totals(httpx.get(f"{url}/metrics").text)
    batches = max(1, batches_after - batches_before)
    return figures | {
        "mean_batch_size": round((windows_after - windows_before) / batches, 2),
        "mean_padding_ratio": round((padding_after - padding_before) / batches, 3),
        "client_cpu_us_per_request": round(1e6 * client_cpu / max(1, figures["requests"]), 1),
    }


async def python_client(port: int, texts: list[str], concurrency: int, seconds: float) -> dict:
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
    latencies.sort()
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "requests": len(latencies),
        "errors": errors,
    }


def engine_alone(engine: Extractor, texts: list[str], batch: int, seconds: float, by_length: bool = False) -> dict:
    """The Python API at this batch size, texts in dev order (as clients send them) or sorted by length."""
    if by_length:
        texts = sorted(texts, key=len)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        chunk = [texts[(done + i) % len(texts)] for i in range(batch)]
        engine.extract_all(chunk)
        done += batch
    return {"sentences_per_s": round(done / (time.perf_counter() - began), 1)}


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over repeated runs, and the throughput of every run."""
    rate = "requests_per_s" if "requests_per_s" in runs[0] else "sentences_per_s"
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]} | {
        "runs": [run[rate] for run in runs]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=Path("runs/exports/webnlg-int8"))
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--levels", type=int, nargs="+", default=LEVELS, help="concurrency levels")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="front-end processes to try")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto", help="auto: wrk when installed")
    args = parser.parse_args()
    dev = json.loads((args.shared / "data/webnlg_star_casrel/dev_triples.json").read_text())
    texts = [item["text"] for item in dev]
    client = ("wrk" if shutil.which("wrk") else "python") if args.client == "auto" else args.client
    work = Path(tempfile.mkdtemp(prefix="triplex-load-"))
    script = write_script([{"text": text} for text in texts], work / "load.lua") if client == "wrk" else None

    servers = {}
    for workers in args.workers:
        port = free_port()
        servers[f"workers{workers}"] = (start_server(args.export, port, {"TRIPLEX_WORKERS": str(workers)}), port)
    engine = open_export(args.export, "cpu")
    runs: dict[str, list[dict]] = {}
    try:
        for _ in range(args.repeats):
            for name, (_, port) in servers.items():
                for concurrency in args.levels:
                    figures = drive(port, texts, concurrency, args.seconds, script)
                    runs.setdefault(f"{name}/c{concurrency}", []).append(figures)
                    print(name, concurrency, figures, flush=True)
                    batch = max(1, round(figures["mean_batch_size"]))
                    for order, by_length in (("dev_order", False), ("by_length", True)):
                        alone = engine_alone(engine, texts, batch, args.seconds / 2, by_length)
                        runs.setdefault(f"{name}/c{concurrency}/engine_alone_{order}", []).append(alone)
                    print(name, concurrency, "engine alone", batch, alone, flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)
    result: dict = {
        "export": str(args.export),
        "device": f"CPU only: {machine()}",
        "seconds_per_level": args.seconds,
        "repeats": args.repeats,
        "client": f"{'wrk, one thread' if client == 'wrk' else 'one asyncio process, minimal keep-alive HTTP/1.1'}"
        " on the same cores, one sentence per request",
    }
    for key, figures in runs.items():
        result[key] = median_of(figures)
    for name in servers:
        for concurrency in args.levels:
            server = result[f"{name}/c{concurrency}"]["requests_per_s"]
            alone = result[f"{name}/c{concurrency}/engine_alone_dev_order"]["sentences_per_s"]
            result[f"{name}/c{concurrency}/server_vs_engine_alone"] = round(server / alone, 3)
    merge_results("load", {"cpu": result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
