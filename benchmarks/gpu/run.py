"""Every GPU figure in one prepared run, in stages; each stage's results are written to --out as it ends.

    python benchmarks/gpu/run.py --out runs/gpu/gpu.json --work runs/gpu [--stages ...]   # on the GPU machine
    python benchmarks/gpu/run.py --out /tmp/rehearsal.json --rehearse --data DIR   # the same on the CPU, tiny

Stages, in order (see benchmarks/gpu/README.md for the command plan on the GPU machine):
  environment  nvidia-smi, versions, providers, and the provider an ONNX Runtime session really runs on
  training     `triplex train` on WebNLG* with MiniLM and the CLI's defaults, stopped after --train-seconds
  exports      that checkpoint exported fp32 and fp16, and a BERT-base-sized extractor (random weights) fp16
  parity       every dev sentence through ONNX Runtime, fp32 and fp16: F1 of each, identical sentences
  engine       Python API, no HTTP: the MiniLM export on dev sentences and a BERT-base-sized extractor (random
               weights) at 64 and 128 tokens, batch 1 to 256: sentences/s, GPU use, share of fp16 peak
  server       `triplex serve` under wrk: single-text requests at c1/c64/c256, 32-text requests at c16
  baseline     the same checkpoint per request in a plain FastAPI endpoint on PyTorch eager, at c64, and
               triplex serve's figure at the same load from the server stage beside it
  tests        pytest -m gpu

A stage that fails records its error and the run goes on; a later command can run the remaining stages into
the same file (stages already there are kept unless named again). Every stage records the device it ran on.
--rehearse runs everything on the CPU with the given (tiny) encoder and data, a few seconds per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE.parent)]

from frontend_cost import get, metric, wait_ready  # noqa: E402
from load import free_port  # noqa: E402
from wrk import rates, run_wrk, write_script  # noqa: E402

STAGES = ("environment", "training", "exports", "parity", "engine", "server", "baseline", "tests")
PEAK_FP16_FLOPS = {"H200": 989e12, "H100": 989e12}  # dense fp16 tensor-core peak (SXM), by the device name
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


class Plan:
    """What the stages share: paths, the device, and how long each figure may take."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.rehearse = args, args.rehearse
        self.device = "cpu" if args.rehearse else "cuda"
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        data = Path(args.data)
        self.encoder = Path(args.encoder) if args.encoder else data / "minilm-l6-h384-uncased"
        sets = data / "webnlg_star_casrel"
        self.train_file = Path(args.train) if args.train else sets / "train_triples.json"
        self.dev_file = Path(args.dev) if args.dev else sets / "dev_triples.json"
        self.schema = Path(args.schema) if args.schema else sets / "rel2id.json"
        self.checkpoint = self.work / "checkpoint"
        self.figure_seconds = 0.3 if args.rehearse else 1.5  # per point of the engine sweep
        self.load_seconds = 1 if args.rehearse else 3  # per load on a server
        self.batch_sizes = [1, 8, 32] if args.rehearse else [1, 8, 32, 64, 128, 256]
        self.bert_base_workers = [2] if args.rehearse else [1, 4, 8]  # rehearsed: the loop over workers, once
        self.minilm_workers = 2 if args.rehearse else 4
        self.concurrencies = (1, 4) if args.rehearse else (1, 64, 256)
        self.baseline_load = "1-text c4" if args.rehearse else "1-text c64"

    def dev(self) -> tuple[list[str], list]:
        from triplex.training.data import read_dataset

        examples = read_dataset(self.dev_file)[0]
        return [example.text for example in examples], [example.triples for example in examples]


def environment(plan: Plan) -> dict:
    import onnxruntime as ort
    import torch

    found: dict = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    if shutil.which("nvidia-smi"):
        fields = "name,driver_version,memory.total,compute_cap"
        line = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.splitlines()[0]
        found["gpu"] = dict(zip(fields.split(","), (value.strip() for value in line.split(","))))
    found["session_providers"] = session_providers(plan.device)
    return found


def session_providers(device: str) -> list[str]:
    """The providers an ONNX Runtime session holds once created (it falls back to the CPU without failing)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(model.SerializeToString(), providers=wanted).get_providers()


def training(plan: Plan) -> dict:
    """`triplex train` with the CLI's defaults, stopped at the end of the first epoch past the budget."""
    from triplex.training.train import LOG_FILE

    command = [sys.executable, "-m", "triplex", "train", "--train", str(plan.train_file), "--dev", str(plan.dev_file),
               "--schema", str(plan.schema), "--encoder", str(plan.encoder), "--output", str(plan.checkpoint),
               "--device", plan.device, "--overwrite"]  # fmt: skip
    if plan.rehearse:  # a tiny model that learns the sample sentences in a few epochs
        command += ["--epochs", "6", "--batch-size", "8", "--lr", "2e-3", "--head-lr", "5e-3"]
    log = plan.work / "train.log"
    started = time.perf_counter()
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=project_env())
        epochs: list[dict] = []
        while process.poll() is None:
            time.sleep(1)
            lines = (
                (plan.checkpoint / LOG_FILE).read_text().splitlines() if (plan.checkpoint / LOG_FILE).exists() else []
            )
            if len(lines) > len(epochs):
                epochs = [json.loads(line) for line in lines]
                elapsed = time.perf_counter() - started
                if elapsed + elapsed / len(epochs) > plan.args.train_seconds:  # the next epoch would end past it
                    process.send_signal(signal.SIGTERM)  # the checkpoint of every finished epoch is saved
                    break
        process.wait()
    epochs = [json.loads(line) for line in read_lines(plan.checkpoint / LOG_FILE)]
    if not epochs:
        raise RuntimeError(f"no epoch finished: {log.read_text()[-2000:]}")
    cpu = cpu_curve(len(epochs))
    return {
        "command": " ".join(command[1:]),
        "seconds": round(time.perf_counter() - started, 1),
        "epochs": [
            {
                "epoch": e["epoch"],
                "train_sentences_per_s": round(e["train_sentences_per_s"], 1),
                "dev_partial_f1": round(e["partial_f1"], 4),
                "dev_f1": round(e["f1"], 4),
            }
            for e in epochs
        ],  # fmt: skip
        "cpu_same_epochs": cpu,
    }


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def cpu_curve(epochs: int) -> dict | None:
    """The CPU run of the same command (benchmarks/results/accuracy.json), over the same epochs."""
    path = ROOT / "benchmarks/results/accuracy.json"
    if not path.is_file():
        return None
    run = json.loads(path.read_text()).get("webnlg_star", {})
    return {
        "dev_f1_per_epoch": run.get("dev_f1_per_epoch", [])[:epochs],
        "train_sentences_per_s_median": run.get("train_sentences_per_s_median"),
        "machine": run.get("machine"),
    }


def exports(plan: Plan) -> dict:
    """The trained checkpoint exported fp32 and fp16 (no CUDA needed), and the BERT-base-sized export."""
    from triplex.training.export import export

    texts, _ = plan.dev()
    found = {}
    for precision in ("fp32", "fp16"):
        folder = plan.work / f"export-{precision}"
        shutil.rmtree(folder, ignore_errors=True)
        info = export(plan.checkpoint, folder, precision, log=lambda message: None, check_texts=texts[:100])
        found[precision] = {"fusions": info.fusions, "triples_check": info.triples_check}
    found["bert_base"] = str(bert_base_export(plan))
    return found


def parity(plan: Plan) -> dict:
    """Every dev sentence through ONNX Runtime from the fp32 and the fp16 export."""
    from triplex.model.extractor import identity, open_export
    from triplex.training.evaluate import score

    texts, gold = plan.dev()
    found: dict = {"sentences": len(texts)}
    triples = {}
    for precision in ("fp32", "fp16"):
        extractor = open_export(plan.work / f"export-{precision}", plan.device, batch_size=64)
        found[f"{precision}_provider"] = extractor.runtime.provider
        predicted = [extraction.triples for extraction in extractor.extract_all(texts)]
        scores = score(gold, predicted)
        found[precision] = {key: round(scores[key], 4) for key in ("f1", "partial_f1", "precision", "recall")}
        triples[precision] = [{identity(triple) for triple in found_triples} for found_triples in predicted]
    found["fp16_loss_points"] = round(100 * (found["fp32"]["partial_f1"] - found["fp16"]["partial_f1"]), 2)
    same = sum(a == b for a, b in zip(triples["fp32"], triples["fp16"]))
    found["identical_sentences_share"] = round(same / len(texts), 4)
    return found


def bert_base_export(plan: Plan) -> Path:
    """A BERT-base-sized extractor (random weights, WebNLG*'s 171 relations), exported fp16 (fp32 rehearsed)."""
    from transformers import BertConfig

    from triplex.model.schema import ExtractorConfig
    from triplex.model.tokenize import TOKENIZER_FILE
    from triplex.training.export import export
    from triplex.training.network import PointerExtractor, load_encoder, save_extractor

    folder = plan.work / "bert-base"
    if (folder / "export" / "extractor.json").is_file():
        return folder / "export"
    config = ExtractorConfig.load(plan.checkpoint)
    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
    vocabulary = json.loads((plan.checkpoint / "config.json").read_text())["vocab_size"]
    encoder = load_encoder("", BertConfig(vocab_size=vocabulary, **(sizes if plan.rehearse else BERT_BASE)))
    model = PointerExtractor(encoder, len(config.relations), config.subject_distance).eval()
    save_extractor(model, config, folder / "checkpoint")
    shutil.copy(plan.checkpoint / TOKENIZER_FILE, folder / "checkpoint" / TOKENIZER_FILE)
    export(folder / "checkpoint", folder / "export", precision(plan), log=lambda message: None)
    return folder / "export"


def precision(plan: Plan) -> str:
    return "fp32" if plan.rehearse else "fp16"


class GpuUse:
    """nvidia-smi's utilisation, sampled every 100 ms while in the ``with`` block; None without a GPU."""

    def __enter__(self) -> GpuUse:
        self.samples: list[float] = []
        self.process = None
        if shutil.which("nvidia-smi"):
            command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self.read, daemon=True).start()
        return self

    def read(self) -> None:
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc: object) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait()

    @property
    def percent(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def texts_of_tokens(tokenizer, texts: list[str], tokens: int, count: int) -> list[str]:
    """``count`` texts of exactly ``tokens`` tokens (special tokens included), cut from the dev sentences."""
    joined = " ".join(texts)
    encoding = tokenizer.encode(joined, add_special_tokens=False)
    body = tokens - 2
    cut = []
    for start in range(0, len(encoding.ids) - body, body):
        begin, end = encoding.offsets[start][0], encoding.offsets[start + body - 1][1]
        cut.append(joined[begin:end])
        if len(cut) == count:
            break
    return cut


def encoder_flops(config: dict, tokens: int) -> float:
    """Forward FLOPs of the encoder for one sentence: projections and feed-forward, and attention."""
    hidden, layers, inner = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * inner) + 4 * tokens * tokens * hidden
    return layers * per_layer


def sweep_point(extractor, texts: list[str], batch: int, seconds: float) -> dict:
    """Sentences/s of ``extract_all`` at this batch size, and graph 1 alone on the same padded batches."""
    extractor.batch_size = batch
    chunk = (texts * (1 + 4 * batch // max(1, len(texts))))[: 4 * batch]
    extractor.extract_all(chunk[:batch])  # warm: this shape's kernels
    done, began = 0, time.perf_counter()
    with GpuUse() as use:
        while time.perf_counter() - began < seconds:
            extractor.extract_all(chunk)
            done += len(chunk)
    elapsed = time.perf_counter() - began
    return {"sentences_per_s": round(done / elapsed, 1), "gpu_utilisation_percent": use.percent}


def graph1_alone(extractor, texts: list[str], batch: int, seconds: float) -> float:
    """Sentences/s of graph 1 alone (padded ids in, outputs back on the host): the engine's ceiling."""
    from triplex.model.tokenize import pad

    windows = [window for text in extractor.windows(texts[:batch]) for window in text]
    input_ids, attention_mask = pad([window.ids for window in windows])
    extractor.runtime.encode(input_ids, attention_mask)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        extractor.runtime.encode(input_ids, attention_mask)
        done += len(windows)
    return round(done / (time.perf_counter() - began), 1)


def engine(plan: Plan) -> dict:
    from triplex.model.extractor import open_export

    texts, _ = plan.dev()
    peak = next((flops for name, flops in PEAK_FP16_FLOPS.items() if name in gpu_name()), None)
    found: dict = {"peak_fp16_flops": peak, "batches": plan.batch_sizes}
    minilm = open_export(plan.work / f"export-{precision(plan)}", plan.device)
    found["minilm_dev"] = {
        str(batch): sweep_point(minilm, texts, batch, plan.figure_seconds) for batch in plan.batch_sizes
    }
    bert = open_export(bert_base_export(plan), plan.device)
    config = json.loads((plan.work / "bert-base" / "checkpoint" / "config.json").read_text())
    for tokens in (64, 128):
        cut = texts_of_tokens(bert.tokenizer, texts, tokens, 512)
        points = {}
        for batch in plan.batch_sizes:
            point = sweep_point(bert, cut, batch, plan.figure_seconds)
            point["graph1_alone_sentences_per_s"] = graph1_alone(bert, cut, batch, plan.figure_seconds / 2)
            if peak:
                point["share_of_peak"] = round(point["sentences_per_s"] * encoder_flops(config, tokens) / peak, 4)
            points[str(batch)] = point
        found[f"bert_base_{tokens}_tokens"] = points
    return found


def gpu_name() -> str:
    if not shutil.which("nvidia-smi"):
        return ""
    return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def project_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def loads(plan: Plan, texts: list[str]) -> dict[str, tuple[Path, int, int]]:
    """The wrk scripts: name -> (script, texts per request, concurrency)."""
    folder = plan.work / "wrk"
    folder.mkdir(exist_ok=True)
    single = write_script([{"text": text} for text in texts], folder / "single.lua")
    batches = [{"texts": [texts[(i + j) % len(texts)] for j in range(32)]} for i in range(0, len(texts), 32)]
    many = write_script(batches, folder / "thirty-two.lua")
    found = {f"1-text c{c}": (single, 1, c) for c in plan.concurrencies}
    return found | {"32-text c16": (many, 32, 4 if plan.rehearse else 16)}


def under_load(plan: Plan, port: int, script: Path, per_request: int, concurrency: int, with_metrics: bool) -> dict:
    url = f"http://127.0.0.1:{port}"
    if with_metrics:
        text = get(f"{url}/metrics")
        before = (metric(text, "triplex_batch_windows_sum"), metric(text, "triplex_batch_windows_count"))
    summary, client_cpu = run_wrk(script, port, concurrency, plan.load_seconds)
    found = rates(summary, per_request)
    found["client_cpu_share_of_host"] = round(client_cpu / summary["seconds"] / len(os.sched_getaffinity(0)), 3)
    if with_metrics:
        text = get(f"{url}/metrics")
        windows = metric(text, "triplex_batch_windows_sum") - before[0]
        found["mean_batch"] = round(windows / max(1, metric(text, "triplex_batch_windows_count") - before[1]), 2)
    return found


def serve(command: list[str], port: int, ready: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=project_env(),
                                   start_new_session=True)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}{ready}", process)
    except (RuntimeError, OSError) as error:
        stop(process)
        raise RuntimeError(f"{error}: {log.read_text()[-1500:]}") from None
    return process


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def server(plan: Plan) -> dict:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not on PATH (benchmarks/gpu/prepare.sh carries it in .gpu/p1/wrk)")
    texts, _ = plan.dev()
    exports = {"bert_base": bert_base_export(plan), "minilm": plan.work / f"export-{precision(plan)}"}
    workers = {"bert_base": plan.bert_base_workers, "minilm": [plan.minilm_workers]}
    found: dict = {}
    for name, folder in exports.items():
        for count in workers[name]:
            port = free_port()
            command = [sys.executable, "-m", "triplex.service", "--model", str(folder), "--port", str(port),
                       "--workers", str(count), "--provider", plan.device]  # fmt: skip
            process = serve(command, port, "/health/ready", plan.work / f"serve-{name}-{count}.log")
            try:
                time.sleep(1 + count / 2)  # every worker up
                found[f"{name} --workers {count}"] = {
                    load: under_load(plan, port, script, per_request, concurrency, True)
                    for load, (script, per_request, concurrency) in loads(plan, texts).items()
                }
            finally:
                stop(process)
    return found


def baseline(plan: Plan) -> dict:
    """What a user would write: FastAPI, PyTorch eager, one request at a time (under the server stage's
    single-text load at c64); ``ratio`` is filled in once the server stage has run too."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not on PATH (benchmarks/gpu/extra.sh puts it there)")
    texts, _ = plan.dev()
    load = plan.baseline_load
    script, _, concurrency = loads(plan, texts)[load]
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "baseline_app:app", "--app-dir", str(HERE), "--port", str(port),
               "--log-level", "warning"]  # fmt: skip
    os.environ["BASELINE_CHECKPOINT"], os.environ["BASELINE_DEVICE"] = str(plan.checkpoint), plan.device
    process = serve(command, port, "/docs", plan.work / "baseline.log")
    try:
        return {"load": load, "pytorch_eager_fastapi": under_load(plan, port, script, 1, concurrency, False)}
    finally:
        stop(process)


def compare_with_baseline(results: dict, plan: Plan) -> None:
    """triplex serve (MiniLM, the server stage) against the baseline at the same load."""
    served = results.get("server", {}).get(f"minilm --workers {plan.minilm_workers}", {})
    base = results.get("baseline", {})
    load = base.get("load")
    if load in served and "pytorch_eager_fastapi" in base:
        base["triplex_serve"] = served[load]
        eager = base["pytorch_eager_fastapi"]["requests_per_s"]
        base["ratio"] = round(served[load]["requests_per_s"] / eager, 2) if eager else None


def tests(plan: Plan) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=project_env(), timeout=300)
    return {"exit_code": result.returncode, "summary": result.stdout.strip().splitlines()[-1:]}


RUNS: dict[str, Callable[[Plan], dict]] = {
    "environment": environment,
    "training": training,
    "exports": exports,
    "parity": parity,
    "engine": engine,
    "server": server,
    "baseline": baseline,
    "tests": tests,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file; each stage is written as it ends")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--rehearse", action="store_true", help="on the CPU, tiny and short: a check of the program")
    parser.add_argument("--data", default=str(ROOT / ".gpu/p1/data"), help="folder with MiniLM and WebNLG*")
    parser.add_argument("--encoder", help="encoder folder (default: DATA/minilm-l6-h384-uncased)")
    parser.add_argument("--train", help="training file (default: WebNLG* under DATA)")
    parser.add_argument("--dev", help="dev file (default: WebNLG* under DATA)")
    parser.add_argument("--schema", help="schema file (default: WebNLG* under DATA)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "triplex-gpu"), help="scratch folder")
    parser.add_argument("--train-seconds", type=float, default=100, help="training stops at the last epoch within this")
    args = parser.parse_args()
    plan = Plan(args)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for stage in args.stages:
        began = time.perf_counter()
        try:
            results[stage] = RUNS[stage](plan)
        except Exception as error:  # noqa: BLE001 - a failed stage is recorded; the next one still runs
            results[stage] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
        results[stage] |= {"device": plan.device, "stage_seconds": round(time.perf_counter() - began, 1)}
        compare_with_baseline(results, plan)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(
            f"{stage}: {round(time.perf_counter() - began, 1)} s",
            "error" if "error" in results[stage] else "",
            flush=True,
        )


if __name__ == "__main__":
    main()
