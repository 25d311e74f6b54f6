"""Bulk extraction on Ray Data and replicas on Ray Serve, on a real local Ray cluster (one for the module)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from triplex import load as triplex_load

from .conftest import ROOT
from .sample import generate
from .test_cli import assert_one_line_error, triplex
from .test_service import free_port, stop

ACTOR = "ExtractAndWrite"  # Ray names an actor's process after its class: ray::MapWorker(MapBatches(ExtractAndWrite))

RAY = str(Path(sys.executable).parent / "ray")  # the ray command of this environment, on PATH or not


def ray_head(*flags: str) -> Iterator[str]:
    """A Ray head with 2 CPUs, started the way a user starts one; its address. Token authentication is off
    for it and its clients (set in os.environ, which every command of these tests inherits): with it on,
    a client that names an address needs RAY_AUTH_MODE=token and the token (Ray's rule since 2.5x)."""
    port = free_port()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats"]
    subprocess.run([*command, *flags], check=True, capture_output=True, env=env, timeout=300)
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=300)
    del os.environ["RAY_AUTH_MODE"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    yield from ray_head()


def write_inputs(folder: Path, count: int) -> set[str]:
    """JSON lines in two files (with ids, without, bare strings, bad records) and a Parquet file; the ids of
    the good records."""
    folder.mkdir()
    texts = [example.text for example in generate(count, seed=7)]  # the tiny model learnt these
    half = count // 2
    with open(folder / "a.jsonl", "w") as handle:
        for number, text in enumerate(texts[:half]):
            handle.write(json.dumps({"id": f"a{number}", "text": text, "source": "kept out"}) + "\n")
        handle.write('{"id": "no-text"}\n{"id": 7, "text": 7}\nnot json\n')
        handle.write(json.dumps({"id": "long", "text": "x" * 2001}) + "\n")
    with open(folder / "b.jsonl", "w") as handle:  # no ids: FILE:LINE
        for text in texts[half:-10]:
            handle.write(json.dumps(text) + "\n")
    pq.write_table(pa.table({"text": texts[-10:], "id": [f"p{n}" for n in range(10)]}), folder / "c.parquet")
    b_lines = [f"{(folder / 'b.jsonl').resolve()}:{line}" for line in range(1, count - half - 10 + 1)]
    return {f"a{n}" for n in range(half)} | set(b_lines) | {f"p{n}" for n in range(10)}


def results(output: Path) -> dict[str, list]:
    """id -> triples of every result record, refusing an id that appears twice."""
    found: dict[str, list] = {}
    for path in sorted((output / "triples").iterdir()):
        rows = pq.read_table(path).to_pylist() if path.suffix == ".parquet" else map(json.loads, path.open())
        for row in rows:
            assert row["id"] not in found, f"{row['id']} written twice"
            triples = json.loads(row["triples"]) if isinstance(row["triples"], str) else row["triples"]
            assert row["triple_count"] == len(triples)
            found[row["id"]] = triples
    return found


def errors(output: Path) -> dict[str, str]:
    return {row["id"]: row["error"] for row in map(json.loads, (output / "errors.jsonl").open())}


def bulk(export: Path, inputs: Path, output: Path, *flags: str) -> subprocess.CompletedProcess:
    result = triplex(
        "extract",
        "--model",
        str(export),
        "--input",
        f"{inputs}/*",
        "--output",
        f"{output}/",
        "--max-chars",
        "2000",
        *flags,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture()
def head_without_dashboard() -> Iterator[str]:
    yield from ray_head("--include-dashboard=false")


def test_a_head_without_dashboard_runs_the_job(
    trained: tuple[Path, Path], head_without_dashboard: str, tmp_path: Path
) -> None:
    """A head started without its dashboard (``ray start --include-dashboard=false``), the lighter head for
    small machines: it has no state API, so the job cannot count its actors per node, and must write its
    results all the same. First in this file: its head stops before the module's cluster starts."""
    good = write_inputs(tmp_path / "in", 200)
    bulk(trained[1], tmp_path / "in", tmp_path / "local")
    bulk(trained[1], tmp_path / "in", tmp_path / "ray", "--ray", "--address", head_without_dashboard, "--actors", "2")
    assert set(results(tmp_path / "ray")) == good and results(tmp_path / "ray") == results(tmp_path / "local")
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["texts"] == len(good) and summary["errors"] == 4 and summary["actors"] == {}


def test_ray_job_writes_what_one_process_writes(trained: tuple[Path, Path], cluster: str, tmp_path: Path) -> None:
    export = trained[1]
    good = write_inputs(tmp_path / "in", 300)
    bulk(export, tmp_path / "in", tmp_path / "local")
    bulk(export, tmp_path / "in", tmp_path / "ray", "--ray", "--address", cluster, "--actors", "2")
    bulk(export, tmp_path / "in", tmp_path / "ray.parquet", "--ray", "--address", cluster, "--actors", "1:2")
    local, on_ray, as_parquet = (results(tmp_path / name) for name in ("local", "ray", "ray.parquet"))
    assert set(local) == good and sum(map(len, local.values())) > 100
    assert on_ray == local and as_parquet == local
    # ... and the same triples as the plain extract of one file (which stops at a bad record), record by record
    kept = tmp_path / "a-good.jsonl"
    kept.write_text("".join(line for line in (tmp_path / "in" / "a.jsonl").open() if line.startswith('{"id": "a')))
    plain = triplex("extract", "--model", str(export), "--input", str(kept))
    assert {row["id"]: row["triples"] for row in map(json.loads, plain.stdout.splitlines())} == {
        key: value for key, value in local.items() if key.startswith("a")
    }
    not_json = f"{(tmp_path / 'in' / 'a.jsonl').resolve()}:{150 + 3}"  # 150 good lines, no-text, 7, then this
    expected_errors = {"no-text", "7", "long", not_json}
    for name in ("local", "ray", "ray.parquet"):
        found = errors(tmp_path / name)
        assert set(found) == expected_errors, found
        assert 'no "text" field' in found["no-text"] and "2001 characters" in found["long"]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["texts"] == len(good) and summary["errors"] == 4
        assert summary["triples"] == sum(map(len, local.values()))
        assert not (tmp_path / name / "errors.parts").exists()  # the read tasks' parts, joined
    # the same errors file, in the same order: the inputs' order, line by line
    assert (tmp_path / "ray" / "errors.jsonl").read_bytes() == (tmp_path / "local" / "errors.jsonl").read_bytes()


def test_a_killed_actor_loses_and_repeats_nothing(trained: tuple[Path, Path], cluster: str, tmp_path: Path) -> None:
    good = write_inputs(tmp_path / "in", 2000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "triplex", "extract", "--model", str(trained[1])]
    command += ["--input", f"{tmp_path}/in/*", "--output", f"{tmp_path}/out/", "--max-chars", "2000"]
    command += ["--ray", "--address", cluster, "--actors", "1", "--batch-size", "4"]
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        pids = subprocess.run(["pgrep", "-f", ACTOR], capture_output=True, text=True).stdout.split()
        written = list((tmp_path / "out" / "triples").glob("*")) if (tmp_path / "out" / "triples").is_dir() else []
        if pids and written:  # the actor is at work and results are landing: kill it mid-run
            killed = int(pids[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    output, _ = job.communicate(timeout=600)
    assert killed is not None, f"the job ended before its actor could be killed:\n{output}"
    assert job.returncode == 0, output
    assert set(results(tmp_path / "out")) == good  # every record once (results() refuses a repeat)
    assert len(errors(tmp_path / "out")) == 4


def test_bad_jobs_fail_in_one_line(trained: tuple[Path, Path], tmp_path: Path) -> None:
    export, folder = str(trained[1]), tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text('"one text"\n')
    no_file = triplex("extract", "--model", export, "--input", f"{tmp_path}/none-*.jsonl", "--output", f"{tmp_path}/o/")
    assert_one_line_error(no_file, "no file matches")
    started = time.monotonic()
    unreachable = triplex(
        "extract", "--model", export, "--input", str(folder), "--output", f"{tmp_path}/o/", "--ray",
        "--address", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert_one_line_error(unreachable, "no Ray cluster answers")
    assert time.monotonic() - started < 30
    # Ray (or pyarrow) not installed: a package of that name that cannot be imported stands first on the path
    for package, flags, fix in (("ray", ["--ray"], "triplex[ray]"), ("pyarrow", [], "triplex[bulk]")):
        fake = tmp_path / f"no-{package}" / package
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text(f'raise ImportError("No module named {package}")\n')
        env = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"}
        command = [sys.executable, "-m", "triplex", "extract", "--model", export, "--input", str(folder)]
        without = subprocess.run(
            [*command, "--output", f"{tmp_path}/o/", *flags], capture_output=True, text=True, env=env, timeout=120
        )
        assert_one_line_error(without, f'pip install "{fix}"')


def without_none(triple: dict) -> dict:
    return {key: value for key, value in triple.items() if value is not None}


def replicas_answering(url: str, texts: list[str], wanted: int, seconds: float = 120) -> set[str]:
    """The replicas that answered requests sent 8 at a time, until ``wanted`` of them did or time ran out
    (a replica whose engine is still loading on a slow machine gets none yet)."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(8) as pool:
        while len(seen) < wanted and time.monotonic() < deadline:
            for response in pool.map(lambda _: client.post(f"{url}/v1/extract", json={"texts": texts}), range(8)):
                assert response.status_code == 200, response.text
                seen.add(response.headers["x-triplex-replica"])
    return seen


def test_serve_on_ray_answers_like_serve(trained: tuple[Path, Path], cluster: str) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIPLEX_PROVIDER": "cpu", "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, "-m", "triplex.service", "--model", str(trained[1]), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--ray", "--address", cluster, "--replicas", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        texts = [example.text for example in generate(12, seed=7)]
        assert len(replicas_answering(url, texts, 2)) == 2
        response = httpx.post(f"{url}/v1/extract", json={"texts": texts}, timeout=60)
        assert response.status_code == 200, response.text
        plain = [[triple.to_dict() for triple in found] for found in triplex_load(trained[1])(texts)]
        answered = [result["triples"] for result in response.json()["results"]]
        assert [[without_none(triple) for triple in found] for found in answered] == plain
        assert sum(map(len, plain)) > 5
        metrics = httpx.get(f"{url}/metrics", timeout=10)
        assert metrics.status_code == 200 and "triplex_" in metrics.text
        refused = httpx.post(f"{url}/v1/extract", json={"texts": "not a list"}, timeout=10)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stop(process)
        print(process.stdout.read()[-6000:])  # shown by pytest when the test failed
