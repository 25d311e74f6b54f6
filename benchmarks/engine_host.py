"""The engine process's own host work per window, alone: everything it does around the graphs.

    python benchmarks/engine_host.py --export runs/tiny-webnlg/export [--batches 8 64 192] [--repeats 5]

One-sentence WebNLG* dev requests, as a front end frames them, go through the engine process's own code
(``EngineServer``): parsing each ``Submit``, queueing, the scheduler, padding, the decode, renumbering
and answering each request with a ``Done`` frame on a socket. The graphs run once per batch size and
their outputs are replayed, so no ONNX Runtime time is counted; or, with ``--live``, they run in every
round on one ONNX Runtime thread and the CPU of those calls is taken off (what the engine process counts).
``--decode-in-graphs`` is a bound, not a mode of the service: the subject and object decode (``subject_spans``,
``object_spans``) hand back their first batch's results without computing, as if the graphs returned finished
spans; what is left is the engine's work that no change to the graphs removes.
The selector and the socket reads of the real process are left out. One core; CPU time of this thread
per window, the median over repeats (the batch sizes interleaved in each repeat). Writes an entry
(``--label``) of benchmarks/results/engine_host.json.
"""

from __future__ import annotations

import os

os.sched_setaffinity(0, {0})

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from common import ROOT, Recorder, Replay, machine, merge_results  # noqa: E402

from triplex.model import decode  # noqa: E402
from triplex.model.extractor import open_export  # noqa: E402
from triplex.service import wire  # noqa: E402
from triplex.service.engine_process import EngineServer, Peer  # noqa: E402
from triplex.service.metrics import Metrics, use_folder  # noqa: E402
from triplex.service.settings import ServiceSettings  # noqa: E402


def per_window(server: EngineServer, bodies: list[bytes], other_end: socket.socket, batches: int, live: bool) -> float:
    """CPU µs per window of ``batches`` rounds: every request submitted, one batch, answered; the graphs'
    outputs recorded in the first round and replayed in the others, or (``live``) the graphs run in every
    round and the CPU of the calls into ONNX Runtime is taken off."""
    extractor = server.extractor
    runtime, recorder = extractor.runtime, Recorder(extractor.runtime)
    if not live:  # the first round records through the recorder, every later one replays
        extractor.runtime, recorder.run_cpu_s = recorder, 0.0  # the engine reads it; none is counted here

    def one_round() -> None:
        if not live and recorder.encoder_outputs:
            extractor.runtime = Replay(recorder)
        for body in bodies:
            server.submit(0, server.peers[0], wire.parse(body))
        batch = server.next_batch()
        assert len(batch) == len(bodies), f"{len(batch)} of {len(bodies)} windows in one batch"
        server.finish(batch, server.run(server.prepare(batch)))
        try:
            while other_end.recv(1 << 20):
                pass
        except BlockingIOError:
            pass

    for _ in range(20):
        one_round()
    started, in_graphs = time.thread_time(), runtime.run_cpu_s
    for _ in range(batches):
        one_round()
    extractor.runtime = runtime
    spent = time.thread_time() - started - (runtime.run_cpu_s - in_graphs)
    return 1e6 * spent / (batches * len(bodies))


def decode_in_graphs() -> None:
    """The decode steps after each graph call answer with their results for the first batch of the same
    shapes, at no cost: every round sends the same texts, so the results are the right ones."""
    for name in ("subject_spans", "object_spans"):
        step, kept = getattr(decode, name), {}

        def cached(*args: object, step=step, kept=kept) -> object:
            shapes = tuple(arg.shape for arg in args if isinstance(arg, np.ndarray))
            if shapes not in kept:
                kept[shapes] = step(*args)
            return kept[shapes]

        setattr(decode, name, cached)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 192], help="requests per batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", type=int, default=20000, help="windows timed per batch size and repeat")
    parser.add_argument("--label", default="current code", help="the entry of results/engine_host.json to write")
    parser.add_argument("--live", action="store_true", help="run the graphs (one thread) instead of replaying them")
    parser.add_argument(
        "--decode-in-graphs", action="store_true", help="a bound: the decode after each graph call costs nothing"
    )
    args = parser.parse_args()
    use_folder()
    if args.decode_in_graphs:
        decode_in_graphs()
    extractor = open_export(args.export, "cpu", threads=1, spinning=False)  # as the engine process opens it
    dev = json.loads((args.shared / "data/webnlg_star_casrel/dev_triples.json").read_text())
    texts = [record["text"] for record in dev]
    config = extractor.config
    bodies = []
    for index, text_windows in enumerate(extractor.windows(texts[: max(args.batches)])):
        ids, starts = text_windows[0].ids, text_windows[0].starts
        bodies.append(wire.frame(wire.Submit(index, ids, starts, [len(ids)], time.monotonic() + 1e9))[4:])
    settings = ServiceSettings(model_dir=str(args.export))
    figures: dict[int, list[float]] = {size: [] for size in args.batches}
    for _ in range(args.repeats):
        for size in args.batches:
            server = EngineServer(extractor, settings, max(size, 8), Metrics())
            ours, other_end = socket.socketpair()
            other_end.setblocking(False)
            server.peers[0] = Peer(ours)
            rounds = max(1, (args.windows // 10 if args.live else args.windows) // size)
            figures[size].append(per_window(server, bodies[:size], other_end, rounds, args.live))
            ours.close()
            other_end.close()
    results = {
        "machine": f"CPU only: {machine()}, one core",
        "graphs": "run, one ONNX Runtime thread, its calls' CPU taken off" if args.live else "replayed",
        "decode": "cached (a bound: as if the graphs returned finished spans)" if args.decode_in_graphs else "run",
        "export": str(args.export),
        "max_length": config.max_length,
        "us_per_window": {str(size): round(statistics.median(runs), 1) for size, runs in figures.items()},
        "runs": {str(size): [round(run, 1) for run in runs] for size, runs in figures.items()},
    }
    print(json.dumps(results, indent=2))
    merge_results("engine_host", {args.label: results})


if __name__ == "__main__":
    main()
