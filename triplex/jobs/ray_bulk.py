"""Bulk extraction as a Ray Data job (``triplex extract --ray``; needs ``pip install "triplex[ray]"``).

Records are read and checked in tasks, then extracted and written by a pool of actors that each load the
extractor once. Ray retries the batches of an actor that dies on a new one, and a retried batch rewrites the
same file, so every record lands exactly once. A read task writes its file's bad records to a part file of
its own (a retried one rewrites it), which the driver joins into errors.jsonl at the end: one pass over the
input. Read tasks ask for no CPU: the actors hold the CPUs (on a 2-core machine an actor with both would
otherwise starve the readers), and their threads do not spin, since they share the cores with Ray's own
processes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy
from ray.data.datasource import FileBasedDatasource

from triplex.jobs.bulk import (
    ENGINE_BATCHES_PER_CALL,
    BulkError,
    ExtractRecords,
    JobSummary,
    bad,
    error_lines,
    good,
    json_lines,
    prepare_output,
    record_blocks,
    write_summary,
)
from triplex.service.ray_cluster import connect

ACTOR_CLASS = "MapWorker(MapBatches(ExtractAndWrite))"  # how Ray Data names the actors of ExtractAndWrite
STATE_TIMEOUT_S = 10  # the actors per node come from Ray's state API, which a cluster may lack


class RecordsSource(FileBasedDatasource):
    """The good records of JSON lines and Parquet files; one task reads a whole file and writes its bad
    records to ``errors/NUMBER.jsonl``, NUMBER the file's place among the inputs."""

    def __init__(self, paths: list[str], max_chars: int, errors: Path) -> None:
        super().__init__(paths)
        self.max_chars, self.errors, self.numbers = max_chars, errors, {path: n for n, path in enumerate(paths)}

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        part = None
        with contextlib.ExitStack() as stack:
            for records in record_blocks(f.read, path, self.max_chars):
                if pc.any(pc.is_valid(records["error"])).as_py():
                    part = part or stack.enter_context(open(self.errors / f"{self.numbers[path]:06d}.jsonl", "wb"))
                    part.write(error_lines(bad(records)))
                yield good(records)


def join_errors(parts: Path, target: Path) -> int:
    """The read tasks' error files as one, in input order; how many records it holds."""
    count = 0
    with open(target, "wb") as joined:
        for part in sorted(parts.iterdir()):
            data = part.read_bytes()
            joined.write(data)
            count += data.count(b"\n")
            part.unlink()
    parts.rmdir()
    return count


class ExtractAndWrite(ExtractRecords):
    """In each actor: a batch of good records -> their results, written to a file of the results folder;
    returns the batch's counts. The file is named after the batch's first record (its FILE:LINE), so a
    batch that Ray retries after its actor died rewrites the same file; it is written under a hidden
    name and then renamed, so a dead actor leaves no half-written result. Writing here rather than in
    write tasks spares each batch a trip through the object store and a task on a worker of its own."""

    def __init__(self, folder: str, fmt: str, **extractor_args) -> None:
        super().__init__(**extractor_args)
        self.folder, self.format = Path(folder), fmt

    def __call__(self, records: pa.Table) -> pa.Table:
        results = super().__call__(records)
        name = hashlib.sha1(records["source"][0].as_py().encode()).hexdigest()[:20]
        target = self.folder / f"part-{name}.{self.format}"
        hidden = target.with_name(f".{target.name}.{os.getpid()}")
        if self.format == "parquet":
            pq.write_table(results, hidden)
        else:
            hidden.write_bytes(json_lines(results))
        os.replace(hidden, target)
        triples = pc.sum(results["triple_count"]).as_py() or 0
        return pa.table({"texts": [results.num_rows], "triples": [triples]})


def actor_pool(actors: str, gpus_per_actor: float) -> tuple[int, int]:
    """(min, max) actors from ``N``, ``MIN:MAX`` or ``auto`` (one per GPU, else one per 4 CPUs)."""
    if actors == "auto":
        resources = ray.cluster_resources()
        if gpus_per_actor and resources.get("GPU"):
            count = max(1, int(resources["GPU"] // gpus_per_actor))
        else:
            count = max(1, int(resources.get("CPU", 1)) // 4)
        return count, count
    low, _, high = actors.partition(":")
    try:
        pool = int(low), int(high or low)
    except ValueError:
        raise BulkError(f"--actors {actors}: give N, MIN:MAX or auto") from None
    if not 1 <= pool[0] <= pool[1]:
        raise BulkError(f"--actors {actors}: need 1 <= MIN <= MAX")
    return pool


def run_ray(files: list[str], output: Path, fmt: str, args: argparse.Namespace) -> JobSummary:
    """``triplex extract --ray``: ``args`` are its flags (model, address, actors, gpus_per_actor, threads,
    streams, batch_size, max_chars, thresholds, device)."""
    connect(args.address)
    started, summary = time.perf_counter(), JobSummary(runner="Ray")
    triples_folder = prepare_output(output)
    gpus_per_actor = args.gpus_per_actor
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if args.device != "cpu" and ray.cluster_resources().get("GPU") else 0.0
    low, high = actor_pool(args.actors, gpus_per_actor)
    threads = args.threads or max(1, int(ray.cluster_resources().get("CPU", 1)) // high)
    parts = output / "errors.parts"  # a failed run's are not this run's
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir()
    records = ray.data.read_datasource(RecordsSource(files, args.max_chars, parts), ray_remote_args={"num_cpus": 0})
    counts = records.map_batches(
        ExtractAndWrite,
        fn_constructor_kwargs={
            "folder": str(triples_folder.resolve()),
            "fmt": fmt,
            "model": str(Path(args.model).resolve()),
            "provider": "cuda" if gpus_per_actor else "cpu",
            "threads": threads,
            "batch_size": args.batch_size,
            "thresholds": args.thresholds,
            "spinning": False,
            "streams": args.streams,
        },
        batch_size=args.batch_size * ENGINE_BATCHES_PER_CALL,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=low, max_size=high),
        num_cpus=threads,
        num_gpus=gpus_per_actor,
    )
    for batch in counts.iter_batches(batch_size=None, batch_format="pyarrow"):
        summary.texts += pc.sum(batch["texts"]).as_py() or 0
        summary.triples += pc.sum(batch["triples"]).as_py() or 0
    for stray in triples_folder.glob(".part-*"):  # what an actor that died was writing
        stray.unlink()
    summary.errors = join_errors(parts, output / "errors.jsonl")
    summary.finish(started)  # the job's time, without the question below
    summary.actors = actors_by_node()
    return write_summary(output, summary)


def actors_by_node() -> dict[str, int]:
    """How many extraction actors ran on each node (dead ones too: Ray keeps them listed a while); empty
    when the cluster has no dashboard to ask."""
    from ray.util.state import list_actors
    from ray.util.state.exception import RayStateApiException

    counts: dict[str, int] = {}
    job = ray.get_runtime_context().get_job_id()
    filters = [("class_name", "=", ACTOR_CLASS), ("job_id", "=", job)]
    try:
        actors = list_actors(filters=filters, limit=10_000, timeout=STATE_TIMEOUT_S, raise_on_missing_output=False)
    except RayStateApiException:  # the state API lives in the dashboard; a cluster started without one
        return {}  # (ray start --include-dashboard=false) has written its results all the same
    for actor in actors:
        counts[actor.node_id] = counts.get(actor.node_id, 0) + 1
    return counts
