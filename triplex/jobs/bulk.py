"""Bulk extraction: records in JSON lines or Parquet files -> their triples, in this process or as a Ray Data
job whose actors each load the extractor once. Both write the same folder:

    OUTPUT/triples/      result files, JSON lines or Parquet: id, triples (the service's JSON), triple_count, windows
    OUTPUT/errors.jsonl  the records that could not be read, with their id, source (file:line) and reason
    OUTPUT/summary.json  texts, errors, triples, seconds, texts per second

A record's id is its ``id`` field (Parquet: column) when it has one, else ``FILE:LINE`` (Parquet: ``FILE:ROW``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from triplex.files import FileError, json_line, output_folder
from triplex.model.extractor import open_export
from triplex.model.schema import Thresholds
from triplex.model.tokenize import lone_surrogate

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
RECORDS = pa.schema([("id", pa.string()), ("source", pa.string()), ("text", pa.string()), ("error", pa.string())])
RESULTS = pa.schema(
    [("id", pa.string()), ("triples", pa.string()), ("triple_count", pa.int32()), ("windows", pa.int32())]
)
READ_BYTES = 1 << 24  # a JSON lines file is read this much at a time
ROWS_PER_BLOCK = 4096  # records per block read
# Engine batches per call of ExtractRecords (a Ray batch): a Ray task's overhead is paid once per call, and
# the streams of a call wait for its last batch, so a call holds many
ENGINE_BATCHES_PER_CALL = 32


class BulkError(ValueError):
    """A problem with the job as given (no input file, an unreachable cluster): one line for the user."""


@dataclass
class JobSummary:
    texts: int = 0
    errors: int = 0
    triples: int = 0
    seconds: float = 0.0
    texts_per_s: float = 0.0
    runner: str = "one process"
    actors: dict = field(default_factory=dict)  # Ray: how many actors ran on each node id

    def finish(self, started: float) -> JobSummary:
        self.seconds = round(time.perf_counter() - started, 3)
        self.texts_per_s = round(self.texts / self.seconds, 1) if self.seconds else 0.0
        return self

    def line(self) -> str:
        return (
            f"{self.texts} texts, {self.triples} triples, {self.errors} errors in {self.seconds:.1f} s "
            f"({self.texts_per_s:.1f} texts/s, {self.runner})"
        )


# -- input ------------------------------------------------------------------------------------------------


def input_files(pattern: str) -> list[str]:
    """The files that a path, a folder (its .jsonl/.json/.parquet files) or a glob names, sorted."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FORMATS and p.is_file())
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise BulkError(f"--input '{pattern}': no file matches; give a file, a folder or a glob like 'data/*.jsonl'")
    unknown = [str(p) for p in files if p.suffix not in FORMATS]
    if unknown:
        raise BulkError(f"--input: {unknown[0]} is neither JSON lines (.jsonl, .json) nor Parquet (.parquet)")
    return [str(p.resolve()) for p in files]


def count_records(files: list[str]) -> int:
    """About how many records the files hold (lines, Parquet rows): for a progress bar."""
    total = 0
    for path in files:
        if path.endswith(".parquet"):
            with contextlib.suppress(pa.ArrowException):  # an unreadable file is one error record
                total += pq.ParquetFile(path).metadata.num_rows
        else:
            with open(path, "rb") as handle:
                total += sum(piece.count(b"\n") for piece in iter(lambda: handle.read(READ_BYTES), b""))
    return total


def lines(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """The lines of a binary stream, read in large pieces (pyarrow's input streams have no readline)."""
    rest = b""
    while piece := read(READ_BYTES):
        rest += piece
        *complete, rest = rest.split(b"\n")
        yield from complete
    if rest:
        yield rest


def checked(text: object, max_chars: int) -> str | None:
    """Why this record's text cannot be extracted from, or None."""
    if text is None:
        return 'no "text" field'
    if not isinstance(text, str):
        return f'"text" is a JSON {type(text).__name__}, not a string'
    if len(text) > max_chars:
        return f"the text has {len(text)} characters, over the limit of {max_chars} (--max-chars)"
    return lone_surrogate(text)


def json_record(raw: bytes, number: int, path: str, max_chars: int) -> dict:
    source = f"{path}:{number}"
    record = {"id": source, "source": source, "text": None, "error": None}
    try:
        item = json_line(raw, number)
    except FileError as error:
        return record | {"error": str(error)}
    if isinstance(item, str):
        item = {"text": item}
    if not isinstance(item, dict):
        return record | {"error": f"a JSON {type(item).__name__}, not an object with a text or a string"}
    if "id" in item:
        record["id"] = item["id"] if isinstance(item["id"], str) else json.dumps(item["id"], ensure_ascii=False)
    problem = checked(item.get("text"), max_chars)
    return record | ({"error": problem} if problem else {"text": item["text"]})


def record_blocks(read: Callable[..., bytes], path: str, max_chars: int) -> Iterator[pa.Table]:
    """Blocks of (id, source, text, error) records from one file; a bad record gets its error, never stops."""
    if path.endswith(".parquet"):
        yield from parquet_records(read(), path, max_chars)
        return
    records = []
    for number, raw in enumerate(lines(read), 1):
        if raw.strip():
            records.append(json_record(raw, number, path, max_chars))
        if len(records) == ROWS_PER_BLOCK:
            yield pa.Table.from_pylist(records, RECORDS)
            records = []
    if records:
        yield pa.Table.from_pylist(records, RECORDS)


def parquet_records(data: bytes, path: str, max_chars: int) -> Iterator[pa.Table]:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as error:
        message = f"not a readable Parquet file ({error})"
        yield pa.Table.from_pylist([{"id": path, "source": path, "text": None, "error": message}], RECORDS)
        return
    ids = table.column("id").cast(pa.string()).to_pylist() if "id" in table.column_names else None
    texts = table.column("text").to_pylist() if "text" in table.column_names else [None] * table.num_rows
    for begin in range(0, table.num_rows, ROWS_PER_BLOCK):
        records = []
        for row in range(begin, min(begin + ROWS_PER_BLOCK, table.num_rows)):
            source = f"{path}:{row + 1}"
            problem = checked(texts[row], max_chars)
            record_id = ids[row] if ids and ids[row] is not None else source
            records.append(
                {"id": record_id, "source": source, "text": None if problem else texts[row], "error": problem}
            )
        yield pa.Table.from_pylist(records, RECORDS)


def good(records: pa.Table) -> pa.Table:
    return records.filter(pc.is_null(records["error"]))


def bad(records: pa.Table) -> pa.Table:
    return records.filter(pc.is_valid(records["error"]))


# -- extraction and output ----------------------------------------------------------------------------------


class ExtractRecords:
    """Loads the extractor once (per Ray actor); a block of good records -> their results."""

    def __init__(
        self,
        model: str,
        provider: str,
        threads: int,
        batch_size: int,
        thresholds: str | None,
        spinning: bool = True,
        streams: int = 0,
    ) -> None:
        """``streams``: batches run at once on the CPU; 0, one per thread (each single-threaded)."""
        chosen = Thresholds.parse(thresholds) if thresholds else None
        self.extractor = open_export(
            model, provider, threads, batch_size, thresholds=chosen, spinning=spinning, streams=streams
        )

    def __call__(self, records: pa.Table) -> pa.Table:
        # the records were checked as they were read: straight to the windows
        found = self.extractor.extract_windows(self.extractor.windows(records["text"].to_pylist()))
        rows = [
            {
                "id": record_id,
                "triples": json.dumps(extraction.to_dict()["triples"], ensure_ascii=False),
                "triple_count": len(extraction.triples),
                "windows": extraction.windows,
            }
            for record_id, extraction in zip(records["id"].to_pylist(), found)
        ]
        return pa.Table.from_pylist(rows, RESULTS)


def json_lines(results: pa.Table) -> bytes:
    """Result records as JSON lines, the triples as the service's JSON (spliced in, not parsed again)."""
    columns = [results[name].to_pylist() for name in RESULTS.names]
    return "".join(
        f'{{"id": {json.dumps(record_id, ensure_ascii=False)}, "triples": {triples}, '
        f'"triple_count": {count}, "windows": {windows}}}\n'
        for record_id, triples, count, windows in zip(*columns)
    ).encode()


def error_lines(records: pa.Table) -> bytes:
    return "".join(
        json.dumps({"id": row["id"], "source": row["source"], "error": row["error"]}, ensure_ascii=False) + "\n"
        for row in records.select(["id", "source", "error"]).to_pylist()
    ).encode()


def output_format(output: Path, requested: str | None) -> str:
    if requested:
        return requested
    return FORMATS.get(output.suffix, "jsonl")


def prepare_output(output: Path) -> Path:
    """The folder's triples/ subfolder, empty: a run writes a whole answer, never a mix with an older one."""
    triples = output / "triples"
    try:
        output_folder(output)
    except FileError as error:
        raise BulkError(str(error)) from None
    if triples.is_dir() and any(triples.iterdir()):
        raise BulkError(f"--output '{output}' already holds results; give a new folder or remove it")
    triples.mkdir(parents=True, exist_ok=True)
    return triples


def write_summary(output: Path, summary: JobSummary) -> JobSummary:
    (output / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def run_local(
    files: list[str],
    output: Path,
    fmt: str,
    extract: ExtractRecords,
    max_chars: int,
    texts_per_batch: int,
    progress: Callable[[int], None] = lambda texts: None,
) -> JobSummary:
    """The job in this process: read, extract and write file by file."""
    started, summary = time.perf_counter(), JobSummary()
    target = prepare_output(output) / f"part-00000.{fmt}"
    parquet = pq.ParquetWriter(target, RESULTS) if fmt == "parquet" else None
    with open(target, "ab") as handle, open(output / "errors.jsonl", "wb") as errors:
        for path in files:
            with open(path, "rb") as source:
                for records in record_blocks(source.read, path, max_chars):
                    errors.write(error_lines(bad(records)))
                    ready = good(records)
                    for begin in range(0, ready.num_rows, texts_per_batch):
                        results = extract(ready.slice(begin, texts_per_batch))
                        if parquet:
                            parquet.write_table(results)
                        else:
                            handle.write(json_lines(results))
                        summary.texts += results.num_rows
                        summary.triples += pc.sum(results["triple_count"]).as_py() or 0
                        progress(results.num_rows)
                    summary.errors += records.num_rows - ready.num_rows
    if parquet:
        parquet.close()
    return write_summary(output, summary.finish(started))
