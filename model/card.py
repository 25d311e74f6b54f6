"""The model card: ``README.md`` in every checkpoint and export folder, written from ``extractor.json``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triplex.model.schema import ExtractorConfig, Thresholds

CARD_FILE = "README.md"


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def card_thresholds(thresholds: Thresholds) -> str:
    objects = f"start {thresholds.start}, end {thresholds.end}"
    if not thresholds.apart:
        return objects
    return f"subjects start {thresholds.subjects[0]}, end {thresholds.subjects[1]}; objects {objects}"


def model_card(config: ExtractorConfig) -> str:
    training = config.training
    lines = [
        "# triplex extractor",
        "",
        "A pointer extractor with Conditional LayerNorm (subject pointers, then object pointers per predicate).",
        "These facts are also in `extractor.json`; the service reports them at `/v1/model`.",
        "",
        "## Model",
        "",
        f"- encoder: `{training.get('encoder', 'unknown')}`",
        f"- relations: {len(config.relations)} ({', '.join(sorted({r.predicate for r in config.relations})[:20])}"
        + (", ..." if len({r.predicate for r in config.relations}) > 20 else "")
        + ")",
        f"- max length {config.max_length} tokens per window, {config.window_stride} shared by consecutive windows",
        f"- thresholds: {card_thresholds(config.thresholds)}"
        + (f" ({training['thresholds']['chosen']})" if training.get("thresholds") else ""),
    ]
    if training.get("files"):
        lines += ["", "## Training data", ""]
        lines += table(
            ["role", "file", "sha256"], [[f["role"], f["path"], f"`{f['sha256']}`"] for f in training["files"]]
        )
    if training.get("settings"):
        lines += ["", "## Settings", ""]
        lines += table(["setting", "value"], [[name, value] for name, value in training["settings"].items()])
    if training.get("epochs"):
        lines += ["", "## Dev metrics per epoch", ""]
        keys = ["epoch", "loss", "precision", "recall", "f1", "partial_f1"]
        lines += table(keys, [[fmt(record.get(key)) for key in keys] for record in training["epochs"]])
        if training.get("best"):
            lines += ["", f"Kept: epoch {training['best']['epoch']} (dev F1 {training['best']['f1']:.4f})."]
    if config.export is not None:
        export = config.export
        lines += ["", "## Export", ""]
        lines += [
            f"- precision {export.precision}, ONNX Runtime {export.onnxruntime}",
            f"- fp32 graphs against PyTorch: max abs difference {export.fp32_max_difference:.2e}",
        ]
        if export.final_max_difference is not None:
            lines.append(f"- final graphs against PyTorch: max abs difference {export.final_max_difference:.2e}")
        if export.triples_check:
            check = export.triples_check
            lines.append(
                f"- triples against PyTorch: identical in {check['identical_sentences']}/{check['sentences']} "
                f"sentences, {check['shared_triples']} of {check['pytorch_triples']} triples kept"
            )
    return "\n".join(lines) + "\n"


def fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
