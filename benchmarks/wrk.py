"""wrk, the native load generator (``make wrk``): a Lua script that posts given JSON bodies in turn, and a run of
it that returns wrk's summary and wrk's own CPU time."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

LUA = """
local bodies = {%s}
local count = 0
request = function()
  count = count + 1
  return wrk.format("POST", "/v1/extract", {["Content-Type"] = "application/json"}, bodies[count %% #bodies + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %%d, "failed": %%d, "seconds": %%.3f, "p50_ms": %%.2f, "p99_ms": %%.2f}\\n',
    summary.requests, e.connect + e.read + e.write + e.timeout + e.status, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def write_script(bodies: list[dict], path: Path) -> Path:
    """A wrk script that posts ``bodies`` to /v1/extract, one per request, in turn."""
    path.write_text(LUA % ",\n".join(f"[==[{json.dumps(body)}]==]" for body in bodies))
    return path


def run_wrk(script: Path, port: int, concurrency: int, seconds: float) -> tuple[dict, float]:
    """wrk's summary, and its own CPU seconds (this process's children's times, before and after)."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s", "--timeout", "60s", "-s", str(script),
               f"http://127.0.0.1:{port}"]  # fmt: skip
    started = os.times()
    result = subprocess.run(command, capture_output=True, text=True)
    ended = os.times()
    if result.returncode:
        raise RuntimeError(f"wrk failed: {result.stderr.strip()}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return summary, (ended.children_user + ended.children_system) - (started.children_user + started.children_system)


def rates(summary: dict, texts_per_request: int) -> dict:
    """Requests and texts per second, latency percentiles and failures from wrk's summary."""
    return {
        "requests_per_s": round(summary["requests"] / summary["seconds"], 1),
        "texts_per_s": round(summary["requests"] * texts_per_request / summary["seconds"], 1),
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "failed": summary["failed"],
    }
