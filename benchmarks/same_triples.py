"""This code against an older commit, and the service against the CLI: same triples?

    git worktree add /tmp/old COMMIT
    python benchmarks/same_triples.py --old /tmp/old --run webnlg runs/webnlg \
        --run webnlg-onnx runs/exports/webnlg-fp32 --run duie1 runs/duie1 [--served-export runs/exports/webnlg-fp32]

For each model (a checkpoint runs on PyTorch, an export on ONNX Runtime; NAME starts with the dev set's
name), both codebases extract every dev sentence; every triple's spans, predicate and score (rounded to
1e-6), and each text's window count, must match. With ``--served-export``, `triplex serve --workers 2`
answers the WebNLG* dev sentences one request each, and its JSON must equal `triplex extract`'s.
Writes benchmarks/results/same_triples.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from common import ROOT, machine, merge_results
from load import free_port, start_server

from triplex.cli.common import load_model

DEV = {
    "webnlg": "data/webnlg_star_casrel/dev_triples.json",
    "duie1": "data/duie1_lic2019/dev_data.head300.json",
}
# Run inside a checkout (the old one or this one): extract every text with PyTorch and print the triples.
EXTRACT = """
import json, sys
try:
    from triplex.cli.common import load_model
    found = load_model(sys.argv[1], "cpu", 32).extract_all(json.load(open(sys.argv[2])))
except ImportError:  # before the CLI moved to triplex/cli
    from triplex.training.cli import load_model
    found = load_model(sys.argv[1], "cpu", 32).extract(json.load(open(sys.argv[2])))
print(json.dumps([[[t.subject.start, t.subject.end, t.predicate, t.object.start, t.object.end,
                    [[s, e.start, e.end] for s, e in t.qualifiers], round(t.score, 6)] for t in f.triples]
                  + [f.windows] for f in found]))
"""
PACKAGES = ("model", "service", "training")  # folders the package maps under triplex/ (pyproject.toml)


def runnable(checkout: Path) -> None:
    """Links triplex/model -> model (and the others) in the old checkout: with PYTHONPATH alone, the
    editable install of this checkout would answer for them."""
    for name in PACKAGES:
        link = checkout / "triplex" / name
        if not link.exists():
            link.symlink_to(Path("..") / name)


def extract_with(checkout: Path, checkpoint: Path, texts_file: Path) -> list:
    if checkout != ROOT:
        runnable(checkout)
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-c", EXTRACT, str(checkpoint.resolve()), str(texts_file)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


async def serve_all(url: str, texts: list[str]) -> list[dict]:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        responses = await asyncio.gather(*(client.post("/v1/extract", json={"text": text}) for text in texts))
    return [response.json()["results"][0] for response in responses]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--old", type=Path, required=True, help="a checkout of the commit with the old decode")
    parser.add_argument("--run", nargs=2, action="append", metavar=("NAME", "CHECKPOINT"), required=True)
    parser.add_argument("--served-export", type=Path, help="an export of the webnlg run, for the service check")
    args = parser.parse_args()
    result: dict = {
        "machine": f"CPU only: {machine()}",
        "old_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=args.old, capture_output=True, text=True
        ).stdout.strip(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        for name, checkpoint in args.run:
            dev = args.shared / DEV[name.split("-")[0]]
            text = dev.read_text()
            items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()]
            texts = [item["text"] for item in items]
            texts_file = Path(scratch) / f"{name}.json"
            texts_file.write_text(json.dumps(texts))
            old, new = (
                extract_with(args.old, Path(checkpoint), texts_file),
                extract_with(ROOT, Path(checkpoint), texts_file),
            )
            different = sum(a != b for a, b in zip(old, new))
            result[name] = {
                "sentences": len(texts),
                "triples": sum(len(found) - 1 for found in new),  # the last item is the window count
                "sentences_with_different_triples": different,
            }
            print(name, result[name], flush=True)
        if args.served_export:
            texts = [item["text"] for item in json.loads((args.shared / DEV["webnlg"]).read_text())]
            found = load_model(str(args.served_export), "cpu").extract_all(texts)  # what triplex extract prints
            cli = [extraction.to_dict() for extraction in found]
            port = free_port()
            server = start_server(args.served_export, port, {"TRIPLEX_WORKERS": "2"})
            try:
                served = asyncio.run(serve_all(f"http://127.0.0.1:{port}", texts))
            finally:
                server.terminate()
                server.wait()
            same = sum({"triples": c["triples"], "windows": c["windows"]} == s for c, s in zip(cli, served))
            result["service_workers2_vs_cli"] = {"sentences": len(texts), "identical": same}
            print(result["service_workers2_vs_cli"], flush=True)
    merge_results("same_triples", result)


if __name__ == "__main__":
    main()
