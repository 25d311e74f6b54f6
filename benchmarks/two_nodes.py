"""A Ray cluster of two nodes on this machine, a bulk job whose actors run on both, output as one process's.

    python benchmarks/two_nodes.py --export runs/exports/webnlg-fp32 --shared ../shared [--texts 4000]

The head (``ray start --head``) and a second node (``ray start --address HEAD``, its own raylet and
resources) get one CPU each; the job asks for 2 actors of 1 CPU, so Ray must place one on each node.
Figures (node id per actor): benchmarks/results/bulk.json, entry "two-nodes".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bulk import triples_of, write_texts
from common import ROOT, machine, merge_results

HEAD_PORT = 6392

RAY = str(Path(sys.executable).parent / "ray")  # the ray command of this environment, on PATH or not


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--export", type=Path, required=True, help="an fp32 export: int8 triples depend on the batch (see bulk.py)"
    )
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--work", type=Path, default=Path("runs/two-nodes"))
    args = parser.parse_args()
    # a cluster on this machine for this run only; token authentication off for it and its clients
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    args.work.mkdir(parents=True, exist_ok=True)
    texts = args.work / "webnlg.jsonl"
    write_texts(args.shared, args.texts, texts)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    address = f"127.0.0.1:{HEAD_PORT}"
    extract = [sys.executable, "-m", "triplex", "extract", "--model", str(args.export)]
    extract += ["--input", str(texts), "--max-chars", "100000"]
    for folder in ("one", "two"):
        shutil.rmtree(args.work / folder, ignore_errors=True)
    subprocess.run([*extract, "--output", f"{args.work}/one/", "--threads", "1"], check=True, env=env)
    start = [RAY, "start", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([*start, "--head", f"--port={HEAD_PORT}"], check=True, env=env, capture_output=True)
    try:
        subprocess.run([*start, f"--address={address}"], check=True, env=env, capture_output=True)
        nodes = wait_for_nodes(address, 2, env)
        started = time.perf_counter()
        ray_flags = ["--ray", "--address", address, "--actors", "2", "--threads", "1"]
        subprocess.run([*extract, "--output", f"{args.work}/two/", *ray_flags], check=True, env=env)
        seconds = time.perf_counter() - started
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)
    summary = json.loads((args.work / "two" / "summary.json").read_text())
    one, two = args.work / "one", args.work / "two"
    same = triples_of(one) == triples_of(two)
    same_without_scores = same or triples_of(one, scores=False) == triples_of(two, scores=False)
    figures = {
        "nodes": nodes,
        "actors_per_node": summary["actors"],
        "both_nodes_used": set(summary["actors"]) == set(nodes),
        "output_identical_to_one_process": same,
        "triples_identical_without_scores": same_without_scores,
        "texts": summary["texts"],
        "seconds_whole_command": round(seconds, 1),
        "machine": machine(),
    }
    merge_results("bulk", {"two-nodes": figures})
    print(json.dumps(figures, indent=2))
    if not (same_without_scores and figures["both_nodes_used"]):
        sys.exit("two nodes: the actors did not use both nodes, or the output differs")


def wait_for_nodes(address: str, count: int, env: dict) -> list[str]:
    """The ids of the cluster's live nodes, once there are ``count``."""
    probe = f"import ray; ray.init(address='{address}', logging_level='ERROR'); "
    probe += "print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive']))"
    for _ in range(60):
        nodes = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout.split()
        if len(nodes) >= count:
            return nodes
        time.sleep(1)
    raise RuntimeError(f"the cluster at {address} did not reach {count} nodes")


if __name__ == "__main__":
    main()
