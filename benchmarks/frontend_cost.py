"""CPU per request of every process of `triplex serve`, and of the load generator, under a fixed load.

    make wrk        # Debian's wrk: the native load generator (C, one thread, keep-alive)
    python benchmarks/frontend_cost.py --export runs/exports/webnlg-fp32 --shared ../shared [--seconds 10] [--repeats 3]

wrk posts WebNLG* dev sentences (a Lua script cycles through them), one per request at concurrency 32, and
32 per request at concurrency 2, for --seconds each, to `triplex serve --workers 1` and `--workers 2`, and
to a bare FastAPI + uvicorn endpoint that reads the same JSON with orjson and answers a body of the same
shape (``bare_app.py``: the floor). Around each load, the CPU time (user + system, ``/proc/PID/stat``) of
every process: the HTTP front ends, the engine process (split into its own host work, from its
``triplex_engine_host_cpu_seconds`` counter, and the rest, ONNX Runtime's), uvicorn's supervisor, and wrk
itself (its rusage); each front end's requests come from its own metrics file. Beside them, in the same
run: bulk `triplex extract` on the same sentences (its summary's texts/s), and ONNX Runtime's CPU per
sentence when the Python API runs the same windows in batches of the engine's mean size. The settings
alternate within each repeat; figures are medians over repeats. Writes benchmarks/results/frontend_cost.json
(under ``--label`` when given). ``--loads 64-text`` with ``TRIPLEX_MAX_BATCH_SIZE=64`` in the environment: 64
texts per request at concurrency 4, batches of a GPU's size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, machine, merge_results
from load import free_port
from wrk import rates, run_wrk, write_script

TICK = os.sysconf("SC_CLK_TCK")
# texts per request, concurrency; 64-text (not run by default): batches of a GPU's size, with
# TRIPLEX_MAX_BATCH_SIZE=64 in the environment
LOADS = {"1-text": (1, 32), "32-text": (32, 2), "64-text": (64, 4)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def processes(root: int, workers: int) -> dict[int, str]:
    """Every process of a server by kind: front end, engine, supervisor (uvicorn's, with several workers)."""
    kinds = {root: "front_end" if workers == 1 else "supervisor"}
    pending = [root]
    while pending:
        for pid in children(pending.pop()):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            kind = "engine" if "engine_process" in command else "front_end" if "spawn_main" in command else "other"
            kinds[pid] = kind
            pending.append(pid)
    return kinds


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def wait_ready(url: str, process: subprocess.Popen) -> None:
    for _ in range(1200):
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode})")
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def requests_per_front_end(folder: Path, pids: list[int]) -> dict[int, float]:
    """/v1/extract requests answered so far by each front end, from its own metrics file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    served = {}
    for pid in pids:
        files = [str(path) for path in folder.glob(f"*_{pid}.db")]
        samples = [s for family in MultiProcessCollector.merge(files) for s in family.samples]
        extract = [s for s in samples if s.name == "triplex_requests_total" and s.labels["route"] == "/v1/extract"]
        served[pid] = sum(s.value for s in extract)
    return served


def scripts(texts: list[str], folder: Path) -> dict[str, Path]:
    made = {}
    for load, (per_request, _) in LOADS.items():
        if per_request == 1:
            bodies = [{"text": text} for text in texts]
        else:
            starts = range(0, len(texts) - per_request + 1, per_request)
            bodies = [{"texts": texts[i : i + per_request]} for i in starts]
        made[load] = write_script(bodies, folder / f"{load}.lua")
    return made


class Server:
    """A server started for one measurement: triplex serve, or the bare endpoint."""

    def __init__(self, kind: str, workers: int, export: Path) -> None:
        self.kind, self.workers, self.port = kind, workers, free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIPLEX_PROVIDER": "cpu"}
        if kind == "bare":
            command = [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(ROOT / "benchmarks"),
                       "--port", str(self.port), "--workers", str(workers), "--no-access-log",
                       "--log-level", "warning"]  # fmt: skip
            ready = f"http://127.0.0.1:{self.port}/openapi.json"
        else:
            command = [sys.executable, "-m", "triplex.service", "--model", str(export), "--port", str(self.port),
                       "--workers", str(workers)]  # fmt: skip
            ready = f"http://127.0.0.1:{self.port}/health/ready"
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(ready, self.process)
        time.sleep(1 if workers == 1 else 3)  # every worker up
        self.kinds = processes(self.process.pid, workers)
        self.metrics_folder = None
        if kind != "bare":  # the engine process's environment names the metrics folder
            engine = next(pid for pid, kind in self.kinds.items() if kind == "engine")
            environ = Path(f"/proc/{engine}/environ").read_bytes().split(b"\0")
            folder = next(v.split(b"=", 1)[1] for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
            self.metrics_folder = Path(folder.decode())

    def measure(self, script: Path, texts_per_request: int, concurrency: int, seconds: float) -> dict:
        url = f"http://127.0.0.1:{self.port}/metrics"
        run_wrk(script, self.port, concurrency, 2)  # warm: connections, caches, the engine's batch sizes
        before_metrics = get(url) if self.metrics_folder else ""
        fronts = [pid for pid, kind in self.kinds.items() if kind == "front_end"]
        served_before = requests_per_front_end(self.metrics_folder, fronts) if self.metrics_folder else {}
        before = {pid: cpu_seconds(pid) for pid in self.kinds}
        summary, client_cpu = run_wrk(script, self.port, concurrency, seconds)
        after = {pid: cpu_seconds(pid) for pid in self.kinds}
        requests = summary["requests"]
        cpu = {}
        for pid, kind in self.kinds.items():
            cpu[kind] = cpu.get(kind, 0.0) + after[pid] - before[pid]
        result = rates(summary, texts_per_request) | {
            "cpu_us_per_request": {kind: round(1e6 * seconds / requests, 1) for kind, seconds in cpu.items()}
            | {"client": round(1e6 * client_cpu / requests, 1)},
        }
        result["front_end_us_per_text"] = round(result["cpu_us_per_request"]["front_end"] / texts_per_request, 1)
        if self.metrics_folder:
            after_metrics = get(url)
            served = requests_per_front_end(self.metrics_folder, fronts)
            result["requests_per_front_end"] = [int(served[pid] - served_before[pid]) for pid in fronts]

            def delta(name: str) -> float:
                return metric(after_metrics, name) - metric(before_metrics, name)

            windows, batches = delta("triplex_batch_windows_sum"), delta("triplex_batch_windows_count")
            host = delta("triplex_engine_host_cpu_seconds_total")
            result["mean_batch_size"] = round(windows / max(batches, 1), 2)
            result["engine_host_us_per_window"] = round(1e6 * host / windows, 1)
            result["engine_onnx_us_per_window"] = round(1e6 * (cpu["engine"] - host) / windows, 1)
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def onnx_alone(export: Path, texts: list[str], batch: int, seconds: float) -> float:
    """ONNX Runtime's CPU per window when the Python API runs the same windows in batches of ``batch``, as
    the engine process does (its threads, no spinning); its own host work is subtracted as the engine's is."""
    from triplex.model.extractor import open_export
    from triplex.model.tokenize import pad_windows

    extractor = open_export(export, "cpu", 0, spinning=False, streams=1)
    windows = [window for text_windows in extractor.windows(texts) for window in text_windows]
    batches = [windows[i : i + batch] for i in range(0, len(windows) - batch + 1, batch)]
    padded = [pad_windows([w.ids for w in group], [w.starts for w in group]) for group in batches]
    for group in padded[:5]:
        extractor.find_spans(group)
    done, process_started, thread_started = 0, time.process_time(), time.thread_time()
    runs_started, began = extractor.runtime.run_cpu_s, time.perf_counter()
    while time.perf_counter() - began < seconds:
        extractor.find_spans(padded[(done // batch) % len(padded)])
        done += batch
    host = (time.thread_time() - thread_started) - (extractor.runtime.run_cpu_s - runs_started)
    return round(1e6 * (time.process_time() - process_started - host) / done, 1)


def bulk(export: Path, texts: list[str], work: Path) -> float:
    """`triplex extract` on the texts (its defaults): texts per second from its summary."""
    source = work / "bulk.jsonl"
    source.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    output = work / "bulk-out"
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "triplex", "extract", "--model", str(export), "--input", str(source),
               "--output", f"{output}/", "--device", "cpu", "--quiet"]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    return json.loads((output / "summary.json").read_text())["texts_per_s"]


def medians(runs: list[dict]) -> dict:
    first = runs[0]
    result = {}
    for key, value in first.items():
        if isinstance(value, dict):
            result[key] = medians([run[key] for run in runs])
        elif isinstance(value, list):
            result[key] = [run[key] for run in runs]
        else:
            result[key] = round(statistics.median(run[key] for run in runs), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="an export folder (fp32: the CPU default)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--loads", nargs="+", choices=LOADS, default=["1-text", "32-text"])
    parser.add_argument("--label", help="store the run under this key of the results file, not at its top level")
    args = parser.parse_args()
    args.export = args.export.resolve()  # the servers and bulk run from the repository's root
    if shutil.which("wrk") is None:
        sys.exit("frontend_cost: wrk is not installed; run 'make wrk' (Debian's package)")
    dev = json.loads((args.shared / "data/webnlg_star_casrel/dev_triples.json").read_text())
    texts = [record["text"] for record in dev]
    work = Path(tempfile.mkdtemp(prefix="frontend-cost-"))
    made = scripts(texts, work)
    settings = [("bare", 1), *(("triplex", workers) for workers in args.workers)]
    runs: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for kind, workers in settings:
            server = Server(kind, workers, args.export)
            try:
                for load in args.loads:
                    per_request, concurrency = LOADS[load]
                    name = f"{kind} --workers {workers}, {load} requests, c{concurrency}"
                    runs.setdefault(name, []).append(server.measure(made[load], per_request, concurrency, args.seconds))
                    print(repeat, name, json.dumps(runs[name][-1]), flush=True)
            finally:
                server.stop()
        runs.setdefault("bulk triplex extract", []).append({"texts_per_s": bulk(args.export, texts * 4, work)})
        print(repeat, "bulk", runs["bulk triplex extract"][-1], flush=True)
    results = {name: medians(measured) for name, measured in runs.items()}
    batch = round(max(r.get("mean_batch_size", 0) for r in results.values()))
    results[f"onnx alone, batch {batch}"] = {"onnx_us_per_window": onnx_alone(args.export, texts, batch, args.seconds)}
    entry = {
        "machine": f"CPU only: {machine()}",
        "export": str(args.export),
        "max_batch_size": os.environ.get("TRIPLEX_MAX_BATCH_SIZE", "the CPU default"),
        "seconds": args.seconds,
        "repeats": args.repeats,
        "medians": results,
        "runs": runs,
    }
    merge_results("frontend_cost", {args.label: entry} if args.label else entry)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
