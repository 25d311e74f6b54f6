"""The ``triplex`` command end to end, and its one-line errors for bad input."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from triplex import __version__ as triplex_version
from triplex.cli import main
from triplex.model.schema import write_schema
from triplex.training.data import write_jsonl
from triplex.training.evaluate import thresholds_of

from .conftest import ROOT
from .sample import RELATIONS, generate


def triplex(*args: str, module: tuple[str, ...] = ("-m", "triplex")) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *module, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    write_jsonl(generate(48, seed=11), folder / "train.jsonl")
    write_jsonl(generate(16, seed=12), folder / "dev.jsonl")
    write_schema(folder / "schema.jsonl", RELATIONS)
    return {"train": folder / "train.jsonl", "dev": folder / "dev.jsonl", "schema": folder / "schema.jsonl"}


@pytest.fixture(scope="module")
def cli_model(sample_files: dict[str, Path], tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("model")
    extra = ["--epochs", "40", "--lr", "2e-3", "--head-lr", "5e-3", "--ema-decay", "0.9", "--batch-size", "8"]
    result = triplex(*train_args(sample_files, tiny_encoder, output, *extra))
    assert result.returncode == 0, result.stderr
    assert "schema: 7 relations from" in result.stderr and "best dev F1" in result.stderr
    return output


@pytest.fixture(scope="module")
def cli_export(cli_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cli_model`` exported fp32: extraction from it starts in a second, where a checkpoint imports PyTorch."""
    output = tmp_path_factory.mktemp("export") / "fp32"
    result = triplex("export", "--model", str(cli_model), "--output", str(output), "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    return output


def train_args(files: dict[str, Path], encoder: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(files["train"]), "--dev", str(files["dev"]), "--encoder", str(encoder),
            "--output", str(output), *extra]  # fmt: skip


def error_in_process(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """``main(argv)`` in this process (torch imported once for all cases): it must return 2, not raise, and
    end with one error line, which is returned."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and lines and "Traceback" not in captured.err + captured.out, (argv, captured.err)
    assert lines[-1].startswith("triplex: error: ") and sum("error" in line for line in lines) == 1, lines
    return lines[-1]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()  # progress lines may come first; the error is one line, last
    assert lines[-1].startswith("triplex: error: "), result.stderr
    assert sum("error" in line for line in lines) == 1 and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1]


def test_int8_export_calibrates_on_the_models_dev_data(
    cli_model: Path, sample_files: dict[str, Path], tmp_path: Path
) -> None:
    result = triplex("export", "--model", str(cli_model), "--output", str(tmp_path / "int8"), "--precision", "int8")
    assert result.returncode == 0, result.stderr
    dev_sentences = len(sample_files["dev"].read_text().splitlines())
    assert f"calibrating int8 on {dev_sentences} sentences" in result.stderr
    export = json.loads((tmp_path / "int8" / "extractor.json").read_text())["export"]
    assert export["precision"] == "int8" and export["calibration"]["sentences"] == dev_sentences


def test_evaluate_writes_metrics_and_errors(cli_model: Path, sample_files: dict[str, Path], tmp_path: Path) -> None:
    metrics_file, errors_file = tmp_path / "metrics.json", tmp_path / "errors.jsonl"
    result = triplex(
        "evaluate",
        "--model",
        str(cli_model),
        "--data",
        str(sample_files["dev"]),
        "--metrics-out",
        str(metrics_file),
        "--errors",
        str(errors_file),
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(metrics_file.read_text())
    assert {"precision", "recall", "f1", "partial_f1", "sentences", "seconds", "per_predicate"} <= metrics.keys()
    # unseen sentences, a tiny model trained for seconds: measured 0.79 to 0.9 between runs (threads
    # make CPU training not bit-exact); an untrained model scores about 0
    assert metrics["sentences"] == 16 and metrics["f1"] > 0.7
    assert "born_in" in metrics["per_predicate"] and "exact P" in result.stdout
    assert all(type(figures["gold"]) is int for figures in metrics["per_predicate"].values())
    assert "gold True" not in result.stdout and "gold False" not in result.stdout
    for line in errors_file.read_text().splitlines():
        record = json.loads(line)
        assert record["missed"] or record["spurious"]


def test_evaluate_chooses_thresholds_and_stores_them(cli_model: Path, tmp_path: Path) -> None:
    model, data = tmp_path / "model", tmp_path / "other.jsonl"
    shutil.copytree(cli_model, model)
    write_jsonl(generate(24, seed=13), data)
    config = json.loads((model / "extractor.json").read_text())
    config["thresholds"] = {"start": 0.97, "end": 0.97}  # a poor pair stored: few entities pass it
    (model / "extractor.json").write_text(json.dumps(config))

    def f1(*flags: str) -> float:
        result = triplex(
            "evaluate", "--model", str(model), "--data", str(data), "--metrics-out", f"{tmp_path}/m.json", *flags
        )
        assert result.returncode == 0, result.stderr
        return json.loads((tmp_path / "m.json").read_text())["f1"]

    poor, chosen_f1 = f1(), f1("--choose-thresholds")
    stored = json.loads((model / "extractor.json").read_text())
    chosen = stored["training"]["thresholds"]
    assert chosen["chosen"] == f"on {data}" and stored["thresholds"] == thresholds_of(chosen)
    assert chosen_f1 == max(row["f1"] for row in chosen["tried"]) > poor
    assert f1() == chosen_f1  # the next evaluation reads the stored thresholds
    assert f"start {chosen['start']}, end {chosen['end']}" in (model / "README.md").read_text()
    # 24 sentences are too few to choose the subjects' own thresholds: one pair for both
    assert not any("subject_start" in row for row in chosen["tried"])


def test_thresholds_for_subjects_apart_from_objects(cli_export: Path, tmp_path: Path) -> None:
    """Four thresholds: the subjects' pair, then the objects'; a strict objects' pair finds fewer triples
    than the same pair for subjects alone, and every extracted subject passes the subjects' pair."""
    data = tmp_path / "texts.jsonl"
    write_jsonl(generate(24, seed=17), data)

    def found(thresholds: str) -> int:
        result = triplex("extract", "--model", str(cli_export), "--input", str(data), "--thresholds", thresholds)
        assert result.returncode == 0, result.stderr
        return sum(len(json.loads(line)["triples"]) for line in result.stdout.splitlines())

    assert found("0.5,0.5,0.5,0.5") == found("0.5,0.5") > found("0.5,0.5,0.999,0.999")
    assert found("0.999,0.999,0.5,0.5") < found("0.5,0.5")
    assert_one_line_error(triplex("extract", "--model", str(cli_export), "--text", "x", "--thresholds", "0.5,0.5,0.8"))


def test_extract_prints_triples_with_offsets(cli_model: Path) -> None:
    text = "Alice Moreau, who was born in Osaka, works for Kestrel Foods."
    result = triplex("extract", "--model", str(cli_model), "--text", text)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    found = {(t["subject"]["text"], t["predicate"], t["object"]["text"]) for t in output["triples"]}
    assert ("Alice Moreau", "born_in", "Osaka") in found
    for triple in output["triples"]:
        for role in ("subject", "object"):
            entity = triple[role]
            assert text[entity["start"] : entity["end"]] == entity["text"]


def test_distributed_training_with_two_cpu_processes(
    sample_files: dict[str, Path], tiny_encoder: Path, tmp_path: Path
) -> None:
    distributed = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "triplex")
    # slices of at most 64 tokens: each rank cuts its own batches into its own number of slices
    extra = ("--epochs", "2", "--device", "cpu", "--max-batch-tokens", "64")
    args = train_args(sample_files, tiny_encoder, tmp_path, *extra)
    result = triplex(*args, module=distributed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed: 2 processes, backend gloo" in result.stderr
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in log] == [1, 2]  # written once, by rank 0
    assert (tmp_path / "model.safetensors").is_file()


def test_bad_input_gives_one_line_errors(sample_files: dict[str, Path], tiny_encoder: Path, tmp_path: Path) -> None:
    train, dev = str(sample_files["train"]), str(sample_files["dev"])
    common = ["--encoder", str(tiny_encoder), "--output", str(tmp_path / "out")]
    assert_one_line_error(
        triplex("train", "--train", str(tmp_path / "nope.json"), "--dev", dev, *common), "no such file"
    )
    assert_one_line_error(
        triplex("train", "--train", train, "--dev", dev, "--format", "xml", *common), "unknown format"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert_one_line_error(triplex("train", "--train", str(empty), "--dev", dev, *common), "holds no sentences")
    schema = tmp_path / "schema.jsonl"
    schema.write_text('{"predicate": "married_to"}\n')
    assert_one_line_error(
        triplex("train", "--train", train, "--dev", dev, "--schema", str(schema), *common),
        "predicates not in the schema",
        "--schema",
    )
    missing_encoder = ["--encoder", str(tmp_path / "no-such-encoder"), "--output", str(tmp_path / "out")]
    assert_one_line_error(triplex("train", "--train", train, "--dev", dev, *missing_encoder), "not a model folder")
    assert_one_line_error(triplex("evaluate", "--model", str(tmp_path), "--data", dev), "trained model folder")
    assert_one_line_error(triplex("extract", "--model", str(tmp_path / "x"), "--text", "a"), "trained model folder")


def bad_cases(files: dict[str, Path], encoder: Path, trained: tuple[Path, Path], tmp: Path) -> dict[str, tuple]:
    """Every mistake the CLI must answer in one line: (argv, a fragment of that line)."""
    checkpoint, export = trained
    latin1 = tmp / "latin1.jsonl"
    latin1.write_bytes('{"text": "caf\u00e9 au lait", "triples": []}\n'.encode("latin-1"))
    missing_file = tmp / "missing-file"
    shutil.copytree(export, missing_file)
    (missing_file / "objects.onnx").unlink()
    truncated = tmp / "truncated"
    shutil.copytree(export, truncated)
    graph = (truncated / "encoder.onnx").read_bytes()
    (truncated / "encoder.onnx").write_bytes(graph[: len(graph) // 2])
    broken_encoder = tmp / "broken-encoder"
    shutil.copytree(encoder, broken_encoder)
    (broken_encoder / "config.json").write_text('{"model_type": "bert", ')
    surrogates = tmp / "surrogates.jsonl"
    surrogates.write_text('{"text": "half a pair \\ud800 here"}\n')
    a_file = tmp / "a-file"
    a_file.write_text("")
    full = tmp / "full"
    full.mkdir()
    (full / "something").write_text("")
    (tmp / "models").mkdir()
    train, dev = str(files["train"]), str(files["dev"])
    data = ["--train", train, "--dev", dev]
    fresh = ["--encoder", str(encoder), "--output", str(tmp / "out")]
    return {
        "train: data not UTF-8": (["train", "--train", str(latin1), "--dev", dev, *fresh], "not UTF-8"),
        "evaluate: data not UTF-8": (["evaluate", "--model", str(export), "--data", str(latin1)], "not UTF-8"),
        "extract: input not UTF-8": (["extract", "--model", str(export), "--input", str(latin1)], "not UTF-8"),
        "extract: export missing a file": (["extract", "--model", str(missing_file), "--text", "a"], "objects.onnx"),
        "evaluate: export missing a file": (["evaluate", "--model", str(missing_file), "--data", dev], "objects.onnx"),
        "extract: truncated graph": (["extract", "--model", str(truncated), "--text", "a"], "cannot load"),
        "evaluate: truncated graph": (["evaluate", "--model", str(truncated), "--data", dev], "cannot load"),
        "train: broken encoder config.json": (
            ["train", *data, "--encoder", str(broken_encoder), "--output", str(tmp / "o")], "not valid JSON"),
        "train: --output in a missing folder": (
            ["train", *data, "--encoder", str(encoder), "--output", str(tmp / "no" / "out")], "does not exist"),
        "train: --output is a file": (
            ["train", *data, "--encoder", str(encoder), "--output", str(a_file)], "is a file"),
        "extract: --output in a missing folder": (
            ["extract", "--model", str(export), "--text", "a", "--output", str(tmp / "no" / "x.jsonl")],
            "does not exist"),
        "export: --output is a file": (["export", "--model", str(checkpoint), "--output", str(a_file)], "is a file"),
        "train: --epochs 0": (["train", *data, *fresh, "--epochs", "0"], "at least 1 epoch"),
        "train: --subject-loss-weight 0": (["train", *data, *fresh, "--subject-loss-weight", "0"], "positive"),
        "train: --subject-loss-weight nan": (["train", *data, *fresh, "--subject-loss-weight", "nan"], "positive"),
        "train: --mask-rate 1": (["train", *data, *fresh, "--mask-rate", "1"], "not including, 1"),
        "train: --max-batch-tokens 0": (["train", *data, *fresh, "--max-batch-tokens", "0"], "positive number"),
        "train: --mask-rate -0.1": (["train", *data, *fresh, "--mask-rate", "-0.1"], "not including, 1"),
        "train: --device cuda without CUDA": (["train", *data, *fresh, "--device", "cuda"], "no CUDA"),
        "extract: --device cuda without CUDA": (["extract", "--model", str(export), "--text", "a", "--device", "cuda"],
                                                "cuda"),
        "extract: --text with a lone surrogate": (["extract", "--model", str(export), "--text", "a \udcff b"],
                                                  "surrogate"),
        "extract: input with a lone surrogate": (["extract", "--model", str(export), "--input", str(surrogates)],
                                                 "surrogate"),
        "train: relative encoder path that does not exist": (
            ["train", *data, "--encoder", "models/no-such-encoder", "--output", str(tmp / "o2")], "not a model folder"),
        "export: from an export folder": (["export", "--model", str(export), "--output", str(tmp / "e")],
                                          "is an export folder"),
        "export: int8 with no sentences to calibrate on": (
            ["export", "--model", str(checkpoint), "--output", str(tmp / "i8"), "--precision", "int8"],
            "--calibration-data"),
        "train: --resume with no saved state": (["train", *data, *fresh, "--resume"], "no training state"),
        "train: non-empty --output": (["train", *data, "--encoder", str(encoder), "--output", str(full)],
                                      "--overwrite"),
        "evaluate: not a model folder": (["evaluate", "--model", str(tmp), "--data", dev], "neither an export"),
    }  # fmt: skip


def test_every_bad_case_is_one_line_without_a_traceback(
    sample_files: dict[str, Path], tiny_encoder: Path, trained: tuple[Path, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    """In process (one import of torch for all cases); ``main`` must return, not raise."""
    monkeypatch.chdir(tmp_path)  # "models/..." is a folder here: a path, never a hub id
    answers = {}
    for name, (argv, fragment) in bad_cases(sample_files, tiny_encoder, trained, tmp_path).items():
        answers[name] = error_in_process(argv, capsys)
        assert fragment in answers[name], (name, answers[name])
    with capsys.disabled():  # the closing note quotes these
        print("\n" + "\n".join(f"{name}: {line}" for name, line in answers.items()))


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [({"TRIPLEX_PROVIDER": "gpu"}, "TRIPLEX_PROVIDER=gpu"), ({"TRIPLEX_MAX_TEXTS": "many"}, "TRIPLEX_MAX_TEXTS=many")],
)
def test_serve_names_a_bad_setting(trained: tuple[Path, Path], variables: dict, fragment: str) -> None:
    env = {**os.environ, **variables}
    result = subprocess.run(
        [sys.executable, "-m", "triplex", "serve", "--model", str(trained[1])],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("triplex: error: ") and fragment in result.stderr


def test_serve_refuses_a_broken_export_in_one_line(trained: tuple[Path, Path], tmp_path: Path) -> None:
    for broken, fragment in (("missing", "objects.onnx"), ("truncated", "cannot load")):
        folder = tmp_path / broken
        shutil.copytree(trained[1], folder)
        if broken == "missing":
            (folder / "objects.onnx").unlink()
        else:
            (folder / "encoder.onnx").write_bytes((folder / "encoder.onnx").read_bytes()[:1000])
        result = subprocess.run(
            [sys.executable, "-m", "triplex", "serve", "--model", str(folder), "--port", "0"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "TRIPLEX_PROVIDER": "cpu"},
        )  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert fragment in result.stderr.strip().splitlines()[-1]


def test_version_and_help_defaults() -> None:
    assert triplex("--version").stdout.strip() == f"triplex {triplex_version}"
    help_text = triplex("train", "--help").stdout
    assert "(default: auto)" in help_text and "--overwrite" in help_text and "--quiet" in help_text
    assert "(default: None)" not in help_text and "(default: False)" not in help_text  # nothing said: nothing shown
    assert help_text.count("(default: one beside --train") == 1  # a default the help states is not repeated


def test_extract_keeps_each_record_and_streams(cli_export: Path) -> None:
    records = [{"id": "a-1", "text": "Alice Moreau was born in Osaka.", "meta": {"source": "mail"}}, "Mei Tanaka."]
    lines = "\n".join(json.dumps(record) for record in records) + "\n"
    command = [sys.executable, "-m", "triplex", "extract", "--model", str(cli_export), "--input", "-"]
    result = subprocess.run(command + ["--output", "-"], input=lines, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["id"] == "a-1" and first["meta"] == {"source": "mail"} and first["windows"] == 1
    assert second["text"] == "Mei Tanaka." and "triples" in second
    empty = subprocess.run(command, input="\n", capture_output=True, text=True, timeout=120)
    assert empty.returncode == 0 and empty.stdout == "" and "warning: - holds no texts" in empty.stderr


def test_model_card_names_the_data_and_every_epoch(cli_model: Path, sample_files: dict[str, Path]) -> None:
    card = (cli_model / "README.md").read_text()
    facts = json.loads((cli_model / "extractor.json").read_text())["training"]
    digest = hashlib.sha256(sample_files["train"].read_bytes()).hexdigest()
    assert digest in card and {f["role"] for f in facts["files"]} == {"train", "dev", "schema"}
    assert len(facts["epochs"]) == 40 and f"| {facts['best']['epoch']} |" in card
    assert facts["settings"]["epochs"] == 40 and "## Settings" in card
    assert facts["settings"]["subject_loss_weight"] == 2.0  # the model card records it


def test_quiet_prints_only_the_result(cli_export: Path) -> None:
    result = triplex("extract", "--model", str(cli_export), "--text", "Mei Tanaka.", "--quiet")
    assert result.returncode == 0 and result.stderr == "" and json.loads(result.stdout)["text"] == "Mei Tanaka."


def test_progress_off_a_terminal_is_a_plain_line_now_and_then(capsys, monkeypatch) -> None:
    from triplex.cli import progress as progress_module
    from triplex.cli.common import Console

    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)
    bar = progress_module.progress(4, "extract", "text")  # pytest's stderr is no terminal
    assert isinstance(bar, progress_module.PlainProgress)
    bar.update(2)
    line = capsys.readouterr().err
    assert line.startswith("extract: 2/4 texts (50%), ") and line.endswith("/s\n") and "\r" not in line
    assert Console(quiet=True).bar(4, "extract", "text").disable
