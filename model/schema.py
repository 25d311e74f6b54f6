"""The types shared from reader to JSON: entities, triples, relations, thresholds, the extractor's config and
its model card (``README.md`` in every checkpoint and export folder)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

VALUE_SLOT = "@value"
CONFIG_FILE = "extractor.json"
CARD_FILE = "README.md"  # the model card: what extractor.json says, for people
ENCODER_FILE, OBJECTS_FILE = "encoder.onnx", "objects.onnx"  # the two graphs of an export folder


# Entities and triples are not frozen dataclasses: those take 2.6 times as long to build (measured:
# 676 against 259 ns), and the decoder builds three objects per triple. Treat them as immutable.
@dataclass(slots=True, unsafe_hash=True)
class Entity:
    """A span of the original text: ``text == original[start:end]``."""

    text: str
    start: int
    end: int
    type: str = ""

    def to_dict(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end, "type": self.type}


@dataclass(slots=True, unsafe_hash=True)
class Triple:
    """(subject, predicate, object); ``qualifiers`` holds the extra slots of a DuIE 2.0 complex object."""

    subject: Entity
    predicate: str
    object: Entity
    score: float = 1.0
    qualifiers: tuple[tuple[str, Entity], ...] = ()

    def key(self, partial: bool = False) -> tuple:
        """What two triples must share to count as the same one in evaluation.

        ``partial`` compares only the last word of each entity (CasRel's convention for NYT* and WebNLG*).
        """

        def name(entity: Entity) -> str:
            return entity.text.split()[-1] if partial and entity.text.split() else entity.text

        slots = tuple(sorted((slot, name(entity)) for slot, entity in self.qualifiers))
        return name(self.subject), self.predicate, name(self.object), slots

    def to_dict(self) -> dict:
        result = {
            "subject": self.subject.to_dict(),
            "predicate": self.predicate,
            "object": self.object.to_dict(),
            "score": int(self.score * 10000 + 0.5) / 10000,  # 4 decimals; round() takes 5 times as long
        }
        if self.qualifiers:
            result["qualifiers"] = {slot: entity.to_dict() for slot, entity in self.qualifiers}
        return result


def relation_label(predicate: str, slot: str = VALUE_SLOT) -> str:
    """The name of one object pointer head: the predicate, or ``predicate|slot`` for a complex object's slot."""
    return predicate if slot == VALUE_SLOT else f"{predicate}|{slot}"


@dataclass(frozen=True)
class Relation:
    """One object pointer head: a predicate, or one slot of a DuIE 2.0 complex object."""

    predicate: str
    subject_type: str = ""
    object_type: str = ""
    slot: str = VALUE_SLOT

    @property
    def label(self) -> str:
        return relation_label(self.predicate, self.slot)


THRESHOLDS_METAVAR = "START,END[,OBJ_START,OBJ_END]"  # as Thresholds.parse reads them (four: subjects' first)


@dataclass(frozen=True)
class Thresholds:
    """Pointer probabilities above which a token starts or ends an entity (0.6 / 0.5 is the known-good pair).

    ``start``/``end`` hold for objects, and for subjects too unless ``subject_start``/``subject_end`` are
    set: training may choose them apart on dev (spurious triples come mostly from extra objects of right
    subjects, so the best objects' thresholds can lie above the subjects')."""

    start: float = 0.6
    end: float = 0.5
    subject_start: float | None = None
    subject_end: float | None = None

    def __post_init__(self) -> None:
        if not all(0 < value < 1 for value in (self.start, self.end, *self.subjects)):
            raise ValueError(f"thresholds {self.describe()}: each must lie between 0 and 1")

    @property
    def subjects(self) -> tuple[float, float]:
        start = self.start if self.subject_start is None else self.subject_start
        return start, self.end if self.subject_end is None else self.subject_end

    @property
    def values(self) -> tuple[float, float, float, float]:
        """What the decoder uses: subjects' start and end, objects' start and end (``==`` compares fields,
        so two spellings of the same thresholds are told apart only there)."""
        return (*self.subjects, self.start, self.end)

    @property
    def apart(self) -> bool:
        return self.subjects != (self.start, self.end)

    def to_dict(self) -> dict[str, float]:
        """As stored in extractor.json: the subjects' own pair only when it differs."""
        values = {"start": self.start, "end": self.end}
        return values | dict(zip(("subject_start", "subject_end"), self.subjects)) if self.apart else values

    def describe(self) -> str:
        """``START,END``, or ``SUBJECT_START,SUBJECT_END,OBJECT_START,OBJECT_END`` (as ``parse`` reads it)."""
        return ",".join(f"{value:g}" for value in (self.values if self.apart else (self.start, self.end)))

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        """``"START,END"`` for subjects and objects alike, or ``"SUBJECT_START,SUBJECT_END,OBJECT_START,
        OBJECT_END"`` (as ``--thresholds`` and ``TRIPLEX_THRESHOLDS`` take them)."""
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            values = []
        if len(values) == 2:
            return cls(*values)
        if len(values) == 4:
            return cls(values[2], values[3], values[0], values[1])
        raise ValueError(
            f"thresholds '{text}': give START,END (such as 0.6,0.5) or "
            "SUBJECT_START,SUBJECT_END,OBJECT_START,OBJECT_END (such as 0.5,0.5,0.8,0.7)"
        )


@dataclass
class ExportInfo:
    """What ``triplex export`` made: precision, the fusions the optimiser applied, parity measured."""

    precision: str
    fusions: dict[str, int]
    fp32_max_difference: float
    final_max_difference: float | None
    onnxruntime: str
    triples_check: dict[str, int] | None = None  # reduced precision against PyTorch on real sentences
    calibration: dict | None = None  # int8: how many sentences set its activation scales (and their sha256)


@dataclass
class ExtractorConfig:
    """Everything besides the encoder's own config that is needed to run a trained extractor."""

    relations: list[Relation]
    max_length: int = 256
    thresholds: Thresholds = field(default_factory=Thresholds)
    split_cjk: bool = True
    window_stride: int = 64  # tokens shared by consecutive windows of a long text; training sets max_length // 4
    subject_distance: int = 0  # the object heads see token distances to the subject up to this (0: they do not)
    sentence_distance: int = 0  # ... and sentences between a token and the subject up to this (0: they do not)
    export: ExportInfo | None = None
    examples: list[str] = field(default_factory=list)  # dev sentences the web page offers to try
    # how it was trained: encoder, data files with their sha256, settings, dev metrics per epoch (the model card)
    training: dict = field(default_factory=dict)

    @cached_property
    def labels(self) -> list[str]:
        return [relation.label for relation in self.relations]

    @cached_property
    def relations_by_label(self) -> dict[str, Relation]:
        return {relation.label: relation for relation in self.relations}

    @cached_property
    def label_ranks(self) -> np.ndarray:
        """Each relation's place in the alphabetical order of the labels (the order triples are listed in)."""
        return np.argsort(np.argsort(self.labels, kind="stable"), kind="stable")

    @cached_property
    def has_slots(self) -> bool:
        """Whether some relation is an extra slot of a complex object (DuIE 2.0)."""
        return any(relation.slot != VALUE_SLOT for relation in self.relations)

    def save(self, directory: Path) -> None:
        """``extractor.json`` and the model card (``README.md``) that states the same facts for people."""
        stored = asdict(self) | {"thresholds": self.thresholds.to_dict()}
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(stored, ensure_ascii=False, indent=2))
        (Path(directory) / CARD_FILE).write_text(model_card(self))

    @classmethod
    def load(cls, directory: Path) -> ExtractorConfig:
        raw = json.loads((Path(directory) / CONFIG_FILE).read_text())
        return cls(
            relations=[Relation(**relation) for relation in raw["relations"]],
            max_length=raw["max_length"],
            thresholds=Thresholds(**raw["thresholds"]),
            split_cjk=raw["split_cjk"],
            window_stride=raw.get("window_stride", 64),
            subject_distance=raw.get("subject_distance", 0),
            sentence_distance=raw.get("sentence_distance", 0),
            export=ExportInfo(**raw["export"]) if raw.get("export") else None,
            examples=raw.get("examples", []),
            training=raw.get("training", {}),
        )


# ---------------------------------------------------------------- the model card


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
    if training.get("init_from"):
        start = training["init_from"]
        lines.append(
            f"- started from `{start['path']}` (sha256 `{start['sha256'][:16]}`, trained on "
            f"{', '.join(start['trained_on']) or 'unknown data'}): {start['relations_kept']} relations' object "
            f"heads kept, {start['relations_fresh']} fresh"
        )
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


def write_schema(path: Path, relations: list[Relation]) -> None:
    """Write relations as the project's schema lines (``schema.jsonl``)."""
    with open(path, "w", encoding="utf-8") as handle:
        for relation in relations:
            row = {
                "predicate": relation.predicate,
                "subject_type": relation.subject_type,
                "object_type": relation.object_type,
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
