"""triplex in Label Studio's labelling loop: its formats, the offline loop by file, and the ML backend
against a real Label Studio server (installed by ``make test`` in ``.venv-label-studio``, started here)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import triplex
from triplex.model.label_studio import LabelConfig, confidence, label_config_xml, prediction
from triplex.model.schema import Entity, Triple
from triplex.training.data import ReadSummary
from triplex.training.settings import TrainSettings
from triplex.training.train import train

from .conftest import ROOT, built_once
from .sample import RELATIONS, generate
from .test_page import SCREENSHOT
from .test_service import free_port

LABEL_STUDIO = ROOT / ".venv-label-studio" / "bin" / "label-studio"
KEY, TOKEN = "backend-key-for-tests", "label-studio-token-for-tests"
EMAIL, PASSWORD = "tester@example.com", "a-test-password"
EMOJI_TEXT = "😀 Alice Moreau 👩‍💻 was born in Osaka. 𝐀 Mei Tanaka works for Kestrel Foods."


def test_config_lists_what_the_model_does_not_know() -> None:
    config = LabelConfig.parse(label_config_xml(RELATIONS))
    assert config.refusal(RELATIONS) is None
    assert (config.text_name, config.text_field, config.labels_name) == ("text", "text", "label")
    other = LabelConfig.parse(
        '<View><Relations><Relation value="born_in"/><Relation value="married_to"/></Relations>'
        '<Labels name="ner" toName="t"><Label value="person"/><Label value="vehicle"/></Labels>'
        '<Text name="t" value="$body"/></View>'
    )
    refusal = other.refusal(RELATIONS)
    assert "relations the model does not know: married_to" in refusal
    assert "labels the model does not know: vehicle" in refusal


def test_prediction_regions_are_the_entities_and_order_by_doubt() -> None:
    config = LabelConfig.parse(label_config_xml(RELATIONS))

    def entity(name: str, kind: str) -> Entity:
        start = EMOJI_TEXT.index(name)
        return Entity(name, start, start + len(name), kind)

    alice, osaka = entity("Alice Moreau", "person"), entity("Osaka", "city")
    mei, kestrel = entity("Mei Tanaka", "person"), entity("Kestrel Foods", "organisation")
    triples = [Triple(alice, "born_in", osaka, 0.9), Triple(mei, "works_for", kestrel, 0.8)]
    result = prediction(triples, triples, config, "v1")["result"]
    regions = {item["id"]: item["value"] for item in result if item["type"] == "labels"}
    assert len(regions) == 4 and all(EMOJI_TEXT[v["start"] : v["end"]] == v["text"] for v in regions.values())
    relations = [(regions[r["from_id"]]["text"], r["labels"][0], regions[r["to_id"]]["text"])
                 for r in result if r["type"] == "relation"]  # fmt: skip
    assert relations == [("Alice Moreau", "born_in", "Osaka"), ("Mei Tanaka", "works_for", "Kestrel Foods")]
    sure, unsure = Triple(alice, "born_in", osaka, 0.99), Triple(alice, "born_in", osaka, 0.55)
    assert confidence([]) == 1.0 and confidence([sure]) > confidence([sure, unsure]) > 0


def test_extract_writes_label_studio_tasks_and_selects_the_least_sure(trained: tuple[Path, Path], tmp_path: Path):
    texts = [example.text for example in generate(12, seed=99)] + ["The weather is mild today.", EMOJI_TEXT]
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": text, "id": i}) + "\n" for i, text in enumerate(texts)))
    command = [sys.executable, "-m", "triplex", "extract", "--model", str(trained[1]), "--input", str(source)]
    tasks_file, selected_file = tmp_path / "tasks.json", tmp_path / "selected.jsonl"
    subprocess.run([*command, "--format", "labelstudio", "--output", str(tasks_file)], check=True)
    subprocess.run([*command, "--select", "5", "--output", str(selected_file)], check=True)
    tasks = json.loads(tasks_file.read_text())
    assert [task["data"]["text"] for task in tasks] == texts and tasks[0]["data"]["id"] == 0
    found = triplex.load(trained[1], provider="cpu")(texts)
    for task, triples in zip(tasks, found):
        result = task["predictions"][0]["result"]
        text = task["data"]["text"]
        assert all(text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"] for r in result if "value" in r)
        assert sum(r["type"] == "relation" for r in result) == len(triples)
    selected = [json.loads(line) for line in selected_file.read_text().splitlines()]
    scores = sorted(task["predictions"][0]["score"] for task in tasks)
    assert [record["confidence"] for record in selected] == scores[:5]


# --- against a real Label Studio ------------------------------------------------------------------------------


def call(url: str, method: str = "GET", body: object = None, headers: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data, method=method, headers={"content-type": "application/json"} | (headers or {})
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            text = response.read()
    except urllib.error.HTTPError as error:
        error.body = error.read()  # type: ignore[attr-defined]
        error.msg = f"{error.msg}: {error.body[:2000]!r}"  # Label Studio's reason, in the failure
        raise
    return json.loads(text) if text else None


def answer(url: str, body: object, key: str | None = KEY) -> tuple[int, dict]:
    """A POST to the backend as Label Studio sends it (basic auth, the key as password): status and JSON."""
    headers = {"Authorization": "Basic " + base64.b64encode(f"labelstudio:{key}".encode()).decode()} if key else {}
    try:
        return 200, call(url, "POST", body, headers)  # type: ignore[return-value]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.body)  # type: ignore[attr-defined]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    process.kill()
    pytest.fail(f"{url} not up after {seconds} s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not LABEL_STUDIO.is_file():
        pytest.skip(f"Label Studio is not installed in {LABEL_STUDIO.parent.parent} (make label-studio could not)")
    folder = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(folder), "LABEL_STUDIO_HOST": url,
        "LABEL_STUDIO_USERNAME": EMAIL, "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",  # the backend is on the loopback
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
    }  # fmt: skip
    log = folder / "server.log"
    command = [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=folder)
    try:
        wait_until_up(f"{url}/health", process, 300, log)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def weak_model(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained briefly (F1 about 0.46 on the project's texts): annotations teach it more, so a
    training on them must win."""
    settings = TrainSettings(epochs=14, batch_size=8, learning_rate=2e-3, head_learning_rate=5e-3, precision="fp32")

    def build(folder: Path) -> None:
        examples = generate(24, seed=5)
        train(examples, examples, RELATIONS, str(tiny_encoder), folder, settings, ReadSummary(), log=lambda m: None)

    return built_once(tmp_path_factory, "weak-model", build)


@pytest.fixture(scope="module")
def backend(weak_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("backend")
    port = free_port()
    log = folder / "backend.log"
    train_args = "--epochs 12 --lr 2e-3 --head-lr 5e-3 --batch-size 8 --precision fp32"
    command = [
        sys.executable, "-m", "triplex", "label-studio", "serve", "--model", str(weak_model),
        "--workdir", str(folder / "work"), "--port", str(port), "--train-args", train_args,
    ]  # fmt: skip
    env = {**os.environ, "TRIPLEX_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    env.pop("LABEL_STUDIO_URL", None), env.pop("LABEL_STUDIO_API_KEY", None)
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/openapi.json", process, 120, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        assert TOKEN not in log.read_text()  # the Label Studio token is never logged


def annotation(example) -> dict:
    """A gold example as a Label Studio annotation (what an annotator would submit)."""
    regions, result = {}, []
    for triple in example.triples:
        for entity in (triple.subject, triple.object):
            key = (entity.start, entity.end)
            if key not in regions:
                regions[key] = f"g{len(regions)}"
                value = {"start": entity.start, "end": entity.end, "text": entity.text, "labels": [entity.type]}
                result.append({"id": regions[key], "from_name": "label", "to_name": "text", "type": "labels",
                               "value": value})  # fmt: skip
        subject, obj = (regions[(e.start, e.end)] for e in (triple.subject, triple.object))
        result.append({"from_id": subject, "to_id": obj, "type": "relation", "direction": "right",
                       "labels": [triple.predicate]})  # fmt: skip
    return {"result": result}


def shown_in_the_editor(label_studio: str, project: int, task: int, picture: Path) -> list[str]:
    """The highlighted spans of a task in Label Studio's own editor, in a real headless Chromium."""
    from .test_page import CHROMIUM, FLAGS

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{label_studio}/user/login/")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.locator("button[type=submit], input[type=submit]").first.click()
        try:
            page.wait_for_function("() => !location.pathname.startsWith('/user/login')", timeout=60_000)
        except sync_api.TimeoutError:
            page.screenshot(path=str(picture))
            pytest.fail(f"no login to Label Studio ({picture}): {page.inner_text('body')[:1500]}")
        page.goto(f"{label_studio}/projects/{project}/data?task={task}")
        page.get_by_text("triplex-", exact=False).first.click(timeout=120_000)  # the prediction's tab
        highlights = page.locator(".htx-highlight")
        try:
            highlights.first.wait_for(timeout=120_000)
        except sync_api.TimeoutError:
            page.screenshot(path=str(picture))
            pytest.fail(f"no highlight in Label Studio's editor ({picture}): {page.inner_text('body')[:1500]}")
        page.mouse.move(600, 600)  # away from the tab, whose tooltip would cover the text
        page.wait_for_timeout(1000)  # the relation arrows are drawn after the spans
        page.screenshot(path=str(picture))
        shown = [highlights.nth(i).inner_text() for i in range(highlights.count())]
        browser.close()
    return shown


def test_label_studio_stores_predictions_trains_and_takes_the_new_model(
    label_studio: str, backend: str, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Token {TOKEN}"}
    basic = "Basic " + base64.b64encode(f"labelstudio:{KEY}".encode()).decode()
    assert call(f"{backend}/health", headers={"Authorization": basic})["status"] == "UP"
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(f"{backend}/health")
    assert refused.value.code == 401

    # a config the model cannot serve is refused, with what it does not know listed
    strange = label_config_xml(RELATIONS).replace('<Label value="city"/>', '<Label value="planet"/>')
    status, refusal = answer(f"{backend}/setup", {"project": "1.0", "schema": strange})
    assert status == 422 and "labels the model does not know: planet" in refusal["error"]
    assert answer(f"{backend}/predict", {"tasks": []}, key="wrong")[0] == 401

    project = call(f"{label_studio}/api/projects", "POST",
                   {"title": "triplex loop", "label_config": label_config_xml(RELATIONS)}, auth)["id"]  # fmt: skip
    examples = generate(40, seed=31)
    texts = [example.text for example in examples] + [EMOJI_TEXT]
    call(f"{label_studio}/api/projects/{project}/import", "POST", [{"text": text} for text in texts], auth)
    ml = call(f"{label_studio}/api/ml", "POST", {
        "url": backend, "project": project, "title": "triplex", "auth_method": "BASIC_AUTH",
        "basic_auth_user": "labelstudio", "basic_auth_pass": KEY,
    }, auth)  # fmt: skip
    first_version = call(f"{backend}/health", headers={"Authorization": basic})["model_version"]

    def stored_predictions() -> dict[int, dict]:
        call(f"{label_studio}/api/dm/actions?id=retrieve_tasks_predictions&project={project}", "POST",
             {"selectedItems": {"all": True, "excluded": []}}, auth)  # fmt: skip
        tasks = call(f"{label_studio}/api/tasks?project={project}&page_size=1000&fields=all", headers=auth)["tasks"]
        return {task["id"]: task for task in tasks}

    tasks = stored_predictions()
    assert len(tasks) == len(texts)
    assert sum(len(task["predictions"][0]["result"]) for task in tasks.values()) > len(texts)
    for task in tasks.values():
        text = task["data"]["text"]
        (stored,) = [p for p in task["predictions"] if p["model_version"] == first_version]
        assert 0 <= stored["score"] <= 1
        for item in stored["result"]:
            if item["type"] == "labels":
                assert text[item["value"]["start"] : item["value"]["end"]] == item["value"]["text"]

    # the annotator sees triplex's regions in Label Studio's editor (on a text without characters beyond the
    # Basic Multilingual Plane: after those, Label Studio's editor draws regions shifted; its export is right)
    plain = [task for task in tasks.values() if all(ord(c) < 0x10000 for c in task["data"]["text"])]
    first = max(plain, key=lambda task: len(task["predictions"][0]["result"]))
    picture = SCREENSHOT.with_name("label-studio.png") if SCREENSHOT else tmp_path / "label-studio.png"
    shown = shown_in_the_editor(label_studio, project, first["id"], picture)
    (stored,) = first["predictions"]
    regions = {item["value"]["text"] for item in stored["result"] if item["type"] == "labels"}
    assert regions and regions <= set(shown), (regions, shown)

    # an annotator labels most tasks; Label Studio asks the backend to train on them
    by_text = {task["data"]["text"]: task_id for task_id, task in tasks.items()}
    for example in examples[:36]:
        call(f"{label_studio}/api/tasks/{by_text[example.text]}/annotations", "POST", annotation(example), auth)
    call(f"{label_studio}/api/ml/{ml['id']}/train", "POST", {}, auth)
    status, busy = answer(f"{backend}/webhook", {"action": "START_TRAINING", "project": {"id": project}})
    assert status == 409 and "already running" in busy["error"]
    deadline, version = time.monotonic() + 600, first_version
    while version == first_version and time.monotonic() < deadline:
        time.sleep(2)
        version = call(f"{backend}/health", headers={"Authorization": basic})["model_version"]
    assert version != first_version, "the backend kept its first model"

    # the new model version answers Label Studio (which asks /setup for the version before predicting)
    tasks = stored_predictions()
    assert all(any(p["model_version"] == version for p in task["predictions"]) for task in tasks.values())
