"""Bulk extraction: one process against Ray Data with 1 actor (all threads) and with 1 actor per core.

One process runs as ``triplex extract`` does by default (a single-threaded stream of engine batches per core)
and, for comparison, as one stream whose batches use every core.

    python benchmarks/bulk.py --export runs/exports/webnlg-int8 --shared ../shared [--texts 20000] [--repeats 3]
                              [--no-dashboard]

Input: WebNLG* train and dev texts, repeated up to --texts, as JSON lines. Each run is the whole command
(start, model load, read, extract, write), timed from outside; the outputs must hold the same triples.
Ray runs on a head started here (``ray start --head``), as a user would. Figures: benchmarks/results/bulk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, machine, merge_results

RAY_PORT = 6391

RAY = str(Path(sys.executable).parent / "ray")  # the ray command of this environment, on PATH or not


def write_texts(shared: Path, count: int, path: Path) -> None:
    texts = []
    for name in ("train_triples.json", "dev_triples.json"):
        texts += [item["text"] for item in json.loads((shared / "data/webnlg_star_casrel" / name).read_text())]
    with open(path, "w") as handle:
        for number in range(count):
            handle.write(json.dumps({"id": str(number), "text": texts[number % len(texts)]}) + "\n")


def triples_of(folder: Path, scores: bool = True) -> dict[str, str]:
    """id -> the record's triples as JSON (without their scores unless ``scores``)."""
    found = {}
    for path in sorted((folder / "triples").iterdir()):
        for line in path.open():
            row = json.loads(line)
            triples = row["triples"] if scores else [{**t, "score": None} for t in row["triples"]]
            found[row["id"]] = json.dumps(triples)
    return found


def differing(found: dict[str, str], reference: dict[str, str]) -> int:
    """Records whose triples differ; every id must be there exactly once (the dicts hold one entry per id)."""
    assert set(found) == set(reference), "other records than the first run"
    return sum(found[key] != reference[key] for key in reference)


def timed(command: list[str], output: Path) -> tuple[float, dict]:
    shutil.rmtree(output, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, json.loads((output / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="an int8 MiniLM export (WebNLG*)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("runs/bulk"))
    parser.add_argument("--no-dashboard", action="store_true", help="start the head without Ray's dashboard")
    args = parser.parse_args()
    # a cluster on this machine for this run only; token authentication off for it and its clients
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    if not (args.shared / "data/webnlg_star_casrel").is_dir():
        sys.exit(f"{args.shared}/data/webnlg_star_casrel not found; pass --shared")
    args.work.mkdir(parents=True, exist_ok=True)
    texts = args.work / "webnlg.jsonl"
    write_texts(args.shared, args.texts, texts)
    cores = os.cpu_count() or 1
    base = [sys.executable, "-m", "triplex", "extract", "--model", str(args.export), "--input", str(texts)]
    address = f"127.0.0.1:{RAY_PORT}"
    runs = {
        "one process": ["--threads", str(cores)],  # one single-threaded stream per core (the default)
        f"one process, 1 stream x {cores} threads": ["--threads", str(cores), "--streams", "1"],
        f"Ray, 1 actor x {cores} threads": ["--ray", "--address", address, "--actors", "1", "--threads", str(cores)],
        f"Ray, {cores} actors x 1 thread": ["--ray", "--address", address, "--actors", str(cores), "--threads", "1"],
    }
    head = [RAY, "start", "--head", f"--port={RAY_PORT}", f"--num-cpus={cores}", "--disable-usage-stats"]
    head += ["--include-dashboard=false"] if args.no_dashboard else []
    subprocess.run(head, check=True, capture_output=True)
    measured = {name: {"rates": [], "inside": [], "differ": []} for name in runs}
    reference = None
    try:
        for repeat in range(args.repeats):  # interleaved: the VM's drift falls on every runner alike
            for number, (name, flags) in enumerate(runs.items()):
                output = args.work / f"out-{number}-{repeat}"
                seconds, summary = timed([*base, "--output", f"{output}/", *flags], output)
                assert summary["texts"] == args.texts, summary
                found = triples_of(output, scores=False)
                reference = reference or found
                runner = measured[name]
                runner["differ"].append(differing(found, reference))
                runner["rates"].append(args.texts / seconds)
                runner["inside"].append(summary["texts_per_s"])
                print(
                    f"{name}: {args.texts / seconds:.1f} texts/s (inside the job: {summary['texts_per_s']})", flush=True
                )
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
    figures = {
        name: {
            "texts_per_s_median": round(statistics.median(runner["rates"]), 1),
            "runs": [round(rate, 1) for rate in runner["rates"]],
            "inside_the_job_texts_per_s_median": statistics.median(runner["inside"]),  # the summary's: no start-up
            "records_with_other_triples_than_the_first_run": runner["differ"],
        }
        for name, runner in measured.items()
    }
    single = figures["one process"]["texts_per_s_median"]
    for entry in figures.values():
        entry["share_of_one_process"] = round(entry["texts_per_s_median"] / single, 3)
    merge_results(
        "bulk",
        {
            "webnlg-int8-minilm" + (", head without dashboard" if args.no_dashboard else ""): {
                "texts": args.texts,
                "export": str(args.export),
                "machine": machine(),
                "timed": "the whole command from outside (start, model load, read, extract, write), median of "
                f"{args.repeats}, the runners interleaved. Every record exactly once in every run. int8 exports "
                "quantize each batch's "
                "activations with one scale (ONNX Runtime's dynamic quantization), so a record's triples can "
                "change with the records batched beside it: counted here, without scores; an fp32 export "
                "gives the same triples (benchmarks/two_nodes.py, tests/test_ray.py)",
                **figures,
            }
        },
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
