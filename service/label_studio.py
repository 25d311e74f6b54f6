"""``triplex label-studio serve``: triplex as a Label Studio ML backend.

Label Studio calls ``GET /health``, ``POST /setup`` (the project's labelling config: refused when it names
labels or relations the model does not know), ``POST /predict`` (pre-annotations, each with a score that
puts the model's least certain texts first) and ``POST /webhook`` with ``START_TRAINING`` (train again on
the project's annotations), then polls ``POST /job_status``. A training runs as ``triplex`` subprocesses
(PyTorch stays out of this process): fetch the annotations through Label Studio's API, hold out a share,
continue from the current model, export, and switch to the new model only if its F1 on the held-out share
is not worse. One training at a time.

The Label Studio token comes from ``LABEL_STUDIO_API_KEY`` (else the one Label Studio sends at setup); it
is never logged or written to a file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..model.extractor import open_export
from ..model.label_studio import LabelConfig, LabelConfigError, candidates_of, prediction
from ..model.runtime import is_export
from ..model.schema import CONFIG_FILE, ExtractorConfig, write_schema

log = logging.getLogger("triplex.label_studio")
HELD_OUT_SHARE = 0.2  # of the annotated tasks, chosen by a hash of the task id (stable across rounds)


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or refused a request; the message says which and why."""


@dataclass(frozen=True)
class Version:
    """A model the backend can serve: its export, and the trained folder a training continues from."""

    number: int
    export: Path
    checkpoint: Path | None

    @cached_property
    def name(self) -> str:
        """``model_version`` in Label Studio: the folder's name, the version number and the training data's hash."""
        files = ExtractorConfig.load(self.export).training.get("files", [])
        data = next((f["sha256"][:10] for f in files if f.get("role") == "train"), "no-data-hash")
        return f"triplex-{self.number}-{(self.checkpoint or self.export).name}-{data}"


@dataclass
class Job:
    """One training: its state as ``/job_status`` reports it."""

    id: str
    project: int
    status: str = "queued"  # queued, started, finished (switched or kept the old model), failed
    progress: str = ""
    result: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"job": self.id, "job_status": self.status, "project": self.project, "progress": self.progress} | (
            self.result
        )


def fetch_annotations(url: str, token: str, project: int, timeout: float = 60) -> list[dict]:
    """A project's annotated tasks, as Label Studio's JSON export gives them."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/projects/{project}/export?exportType=JSON",
        headers={"Authorization": f"Token {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            tasks = json.load(response)
    except urllib.error.HTTPError as error:
        message = f"Label Studio at {url} answered {error.code} to the export of project {project}"
        raise LabelStudioError(message) from None
    except (urllib.error.URLError, TimeoutError, ValueError) as error:
        raise LabelStudioError(f"cannot read project {project}'s export from {url}: {error}") from None
    if not isinstance(tasks, list):
        raise LabelStudioError(f"Label Studio at {url} sent no task list for project {project}")
    return tasks


def held_out(task: dict) -> bool:
    return int(hashlib.sha256(str(task.get("id")).encode()).hexdigest(), 16) % 1000 < HELD_OUT_SHARE * 1000


class Backend:
    """The served model (swapped whole when a training wins), the projects Label Studio set up, the job."""

    def __init__(
        self, model: Path, workdir: Path, train_args: tuple[str, ...] = (), label_studio_url: str | None = None
    ) -> None:
        self.workdir, self.train_args, self.label_studio_url = workdir, train_args, label_studio_url
        self.lock = threading.Lock()
        self.links: dict[int, tuple[str, str]] = {}  # project -> (Label Studio URL, token) from setup
        self.job: Job | None = None
        self.version = self.first_version(Path(model))
        self.use(self.version, origin=Path(model))

    def first_version(self, model: Path) -> Version:
        """The newest version in the work folder when it grew from this same model, else the model itself
        (a trained folder is exported first)."""
        current = self.workdir / "current.json"
        saved = json.loads(current.read_text()) if current.is_file() else {}
        if saved.get("origin") == str(model.resolve()):
            return Version(saved["number"], Path(saved["export"]), saved["checkpoint"] and Path(saved["checkpoint"]))
        if is_export(model):
            return Version(1, model, None)
        if not (model / CONFIG_FILE).is_file():
            raise LabelStudioError(f"'{model}' is neither an export folder nor a trained model folder")
        export = self.workdir / "versions" / "1" / "export"
        log.info("exporting %s to %s", model, export)
        shutil.rmtree(export.parent, ignore_errors=True)
        export.parent.mkdir(parents=True)
        run_triplex(["export", "--model", str(model), "--output", str(export), "--precision", "fp32"])
        return Version(1, export, model)

    def use(self, version: Version, origin: Path | None = None) -> None:
        """Serve ``version`` from now on, and remember it for a restart from the same ``--model``."""
        extractor = open_export(version.export, provider="cpu")
        candidates = candidates_of(extractor)
        with self.lock:
            self.version, self.extractor, self.candidates = version, extractor, candidates
        self.workdir.mkdir(parents=True, exist_ok=True)
        current = self.workdir / "current.json"
        saved = json.loads(current.read_text()) if current.is_file() and origin is None else {}
        saved |= {"number": version.number, "export": str(version.export), "checkpoint": version.checkpoint}
        saved.setdefault("origin", str(origin.resolve()) if origin else None)
        current.write_text(json.dumps(saved, default=str))
        log.info("serving model version %s", version.name)

    def config(self, xml: str) -> LabelConfig:
        """The project's labelling config, refused with the reason when the model cannot serve it."""
        return LabelConfig.for_model(xml, self.extractor.config.relations)

    def predict(self, tasks: list[dict], xml: str) -> list[dict]:
        config = self.config(xml)
        with self.lock:
            extractor, candidates, name = self.extractor, self.candidates, self.version.name
        texts = [str(task.get("data", {}).get(config.text_field, "")) for task in tasks]
        found, near = extractor.extract(texts), candidates.extract(texts)
        return [prediction(triples, close, config, name) for triples, close in zip(found, near)]

    def start_training(self, project: int) -> Job:
        with self.lock:
            if self.job is not None and self.job.status in ("queued", "started"):
                raise Busy(self.job)
            if self.version.checkpoint is None:
                raise NoCheckpoint()
            self.job = Job(id=f"train-{int(time.time())}-{secrets.token_hex(3)}", project=project)
        threading.Thread(target=self.train, args=(self.job,), daemon=True).start()
        return self.job

    def link(self, project: int) -> tuple[str, str]:
        url, token = self.links.get(project, ("", ""))
        url = self.label_studio_url or os.environ.get("LABEL_STUDIO_URL") or url
        token = os.environ.get("LABEL_STUDIO_API_KEY") or token
        if not url or not token:
            raise LabelStudioError(
                f"no Label Studio address or token for project {project}: set LABEL_STUDIO_URL and "
                "LABEL_STUDIO_API_KEY, or connect the backend from the project so that Label Studio sends them"
            )
        return url, token

    def train(self, job: Job) -> None:
        """Fetch, split, train from the current model, export, compare on the held-out share, switch."""
        try:
            job.status = "started"
            folder = self.workdir / "jobs" / job.id
            folder.mkdir(parents=True)
            job.progress = "fetching the annotations"
            tasks = [t for t in fetch_annotations(*self.link(job.project), job.project) if t.get("annotations")]
            held = [task for task in tasks if held_out(task)]
            kept = [task for task in tasks if not held_out(task)]
            if len(held) < 2 or len(kept) < 4:
                raise LabelStudioError(
                    f"{len(tasks)} annotated tasks give {len(kept)} to train on and {len(held)} to hold out: "
                    "label more (at least 4 and 2)"
                )
            (folder / "train.json").write_text(json.dumps(kept, ensure_ascii=False))
            (folder / "held_out.json").write_text(json.dumps(held, ensure_ascii=False))
            current = self.version
            write_schema(folder / "schema.jsonl", ExtractorConfig.load(current.export).relations)
            checkpoint, export = folder / "checkpoint", folder / "export"
            job.progress = f"training on {len(kept)} tasks from version {current.number}"
            # the epoch and thresholds are chosen on the training share: the held-out one only judges
            self.run(job, [
                "train", "--train", str(folder / "train.json"), "--dev", str(folder / "train.json"),
                "--format", "labelstudio", "--schema", str(folder / "schema.jsonl"),
                "--init-from", str(current.checkpoint), "--output", str(checkpoint), *self.train_args,
            ])  # fmt: skip
            job.progress = "exporting"
            self.run(job, ["export", "--model", str(checkpoint), "--output", str(export), "--precision", "fp32"])
            old, new = (self.held_out_f1(job, model, folder) for model in (current.export, export))
            switch = new >= old
            job.result = {"held_out_tasks": len(held), "train_tasks": len(kept), "f1_before": old, "f1_after": new}
            if switch:
                self.use(Version(current.number + 1, export, checkpoint))
            job.result["model_version"] = self.version.name
            job.progress = f"F1 on {len(held)} held-out tasks {old:.4f} -> {new:.4f}: " + (
                "switched to the new model" if switch else "kept the current model (the new one is worse)"
            )
            job.status = "finished"
        except (LabelStudioError, OSError) as error:
            job.status, job.progress = "failed", str(error)
        except Exception as error:  # a job must end whatever happens, or no training could start again
            log.exception("training %s", job.id)
            job.status, job.progress = "failed", f"unexpected {type(error).__name__}: {error}"
        log.info("training %s %s: %s", job.id, job.status, job.progress)

    def held_out_f1(self, job: Job, export: Path, folder: Path) -> float:
        metrics = folder / f"metrics-{hashlib.sha256(str(export).encode()).hexdigest()[:8]}.json"
        self.run(job, [
            "evaluate", "--model", str(export), "--data", str(folder / "held_out.json"), "--format", "labelstudio",
            "--metrics-out", str(metrics),
        ])  # fmt: skip
        return float(json.loads(metrics.read_text())["f1"])

    def run(self, job: Job, arguments: list[str]) -> None:
        """A ``triplex`` command whose lines of progress become the job's."""
        run_triplex(arguments, lambda line: setattr(job, "progress", f"{arguments[0]}: {line[-200:]}"))


def run_triplex(arguments: list[str], on_line: Callable[[str], None] = lambda line: None) -> None:
    """``triplex ARGUMENTS`` in a process of its own (PyTorch stays out of this one), each line it logs
    handed to ``on_line``; a failure raises its last lines."""
    command = [sys.executable, "-m", "triplex", *arguments]
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:
        for line in process.stderr:  # type: ignore[union-attr]
            if line.strip():
                lines.append(line.strip().removeprefix("triplex: error: "))
                on_line(lines[-1])
    if process.returncode != 0:
        raise LabelStudioError(f"triplex {arguments[0]} failed: {' | '.join(lines[-3:])[-600:]}")


class Busy(Exception):
    def __init__(self, job: Job) -> None:
        self.job = job


class NoCheckpoint(Exception):
    pass


def error(status: int, message: str) -> JSONResponse:
    """Label Studio shows ``error`` of a failed call in its interface."""
    return JSONResponse({"error": message}, status_code=status)


def authorised(api_key: str | None):
    """The ``TRIPLEX_API_KEY`` check: as a bearer token, or as the password of Label Studio's basic auth."""

    def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                value = base64.b64decode(value).decode().partition(":")[2]
            except ValueError:
                value = ""
        elif scheme.lower() != "bearer":
            value = ""
        if not secrets.compare_digest(value.strip().encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: in Label Studio, set the backend's basic auth "
                                "password to TRIPLEX_API_KEY (any user name)")  # fmt: skip

    return check


def create_backend(backend: Backend, api_key: str | None) -> FastAPI:
    app = FastAPI(title="triplex Label Studio ML backend", dependencies=[Depends(authorised(api_key))])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    async def body(request: Request) -> dict:
        try:
            value = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(value, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return value

    @app.get("/health")
    @app.get("/")
    def health() -> dict:
        return {"status": "UP", "model_class": "triplex", "model_version": backend.version.name}

    @app.post("/setup")
    async def setup(request: Request) -> JSONResponse:
        request_body = await body(request)
        try:
            backend.config(str(request_body.get("schema", "")))
        except LabelConfigError as refusal:
            log.warning("setup refused: %s", refusal)
            return error(422, str(refusal))
        project = project_id(request_body.get("project"))
        if project is not None and request_body.get("hostname") and request_body.get("access_token"):
            backend.links[project] = (str(request_body["hostname"]), str(request_body["access_token"]))
        return JSONResponse({"model_version": backend.version.name})

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        request_body = await body(request)
        tasks = request_body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
            return error(400, "'tasks' must be a list of Label Studio tasks")
        try:  # in a thread: extraction must not hold up health checks and other calls
            results = await run_in_threadpool(backend.predict, tasks, str(request_body.get("label_config", "")))
        except LabelConfigError as refusal:
            return error(422, str(refusal))
        return JSONResponse({"results": results, "model_version": backend.version.name})

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        request_body = await body(request)
        project = project_id(request_body.get("project"))
        if request_body.get("action") != "START_TRAINING":
            return JSONResponse({"status": "ignored", "action": request_body.get("action")})
        if project is None:
            return error(400, "START_TRAINING without a project id")
        try:
            job = backend.start_training(project)
        except Busy as busy:
            return error(409, f"a training is already running ({busy.job.id}: {busy.job.progress}); try when it ends")
        except NoCheckpoint:
            return error(409, "this backend serves an export only; start it with the trained model folder to train")
        return JSONResponse({"job": job.id, "job_status": job.status}, status_code=201)

    @app.post("/job_status")
    async def job_status(request: Request) -> JSONResponse:
        job_id = (await body(request)).get("job")
        if backend.job is None or backend.job.id != job_id:
            return error(410, f"no training {job_id} here")
        return JSONResponse(backend.job.to_dict())

    @app.get("/versions")
    def versions() -> dict:
        return {"versions": [backend.version.name]}

    return app


def project_id(value: object) -> int | None:
    """Label Studio sends the project as ``"ID.CREATED"`` (setup, predict) or as an object (webhooks)."""
    if isinstance(value, dict):
        value = value.get("id")
    try:
        return int(str(value).split(".")[0])
    except ValueError:
        return None
