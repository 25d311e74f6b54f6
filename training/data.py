"""Dataset readers. Every format becomes a list of ``Example`` (text + triples with character spans).

Formats: DuIE 1.0 (LIC2019), DuIE 2.0 (complex objects), CasRel/PRGC JSON (NYT, WebNLG), CoNLL04
(SpERT JSON), doccano relation JSONL (as PaddleNLP UIE uses it), Label Studio relation projects' JSON
export and the project's own JSONL (see README, "Data formats").

Entities given as strings are looked up in the text. An entity found several times is labelled at
every occurrence (the model cannot tell identical strings apart any better than the annotator did);
one found only with other letter case is taken as found; one not found at all drops its triple.
All of this is counted in ``ReadSummary``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from ..model.schema import VALUE_SLOT, Entity, Relation, Triple, relation_label
from ..model.tokenize import lone_surrogate, whole_words

FORMATS = ("duie1", "duie2", "casrel", "conll04", "jsonl", "doccano", "labelstudio")
SCHEMA_FILES = ("all_50_schemas", "duie_schema.json", "rel2id.json", "schema.jsonl", "conll04_types.json")


class DataError(ValueError):
    """Bad input data; the message says where and what to do."""


@dataclass
class Example:
    text: str
    triples: list[Triple]


@dataclass
class ReadSummary:
    counts: Counter = field(default_factory=Counter)

    def line(self) -> str:
        order = (
            "sentences",
            "triples",
            "kept",
            "repeated_entity",
            "case_mismatch",
            "not_found",
            "duplicate",
            "windows",
            "fits_no_window",
            "not_token_aligned",
        )
        return ", ".join(f"{key.replace('_', ' ')} {self.counts[key]}" for key in order if key in self.counts)


@dataclass
class RawTriple:
    """A triple as a file states it: entity strings, or spans when the format has offsets."""

    subject: str | Entity
    predicate: str
    object: str | Entity
    subject_type: str = ""
    object_type: str = ""
    qualifiers: dict[str, str | Entity] = field(default_factory=dict)


def occurrences(text: str, name: str, summary: ReadSummary) -> list[tuple[int, int]]:
    """Where ``name`` stands in ``text`` as a whole word, case-sensitive first."""
    for flags in (0, re.IGNORECASE):
        spans = []
        for match in re.finditer(re.escape(name), text, flags):
            if whole_words(text, *match.span()) == match.span():  # not a piece of a longer word
                spans.append(match.span())
        if spans:
            summary.counts["case_mismatch"] += flags != 0
            return spans
    return []


def locate(text: str, value: str | Entity, entity_type: str, summary: ReadSummary) -> list[Entity]:
    if isinstance(value, Entity):
        return [Entity(value.text, value.start, value.end, value.type or entity_type)]
    name = value.strip()
    spans = occurrences(text, name, summary) if name else []
    summary.counts["repeated_entity"] += len(spans) > 1
    return [Entity(text[start:end], start, end, entity_type) for start, end in spans]


def build_example(text: str, raw_triples: list[RawTriple], summary: ReadSummary) -> Example:
    summary.counts["sentences"] += 1
    triples: dict[tuple, Triple] = {}
    for raw in raw_triples:
        summary.counts["triples"] += 1
        subjects = locate(text, raw.subject, raw.subject_type, summary)
        objects = locate(text, raw.object, raw.object_type, summary)
        slots = {slot: locate(text, value, "", summary) for slot, value in raw.qualifiers.items()}
        if not subjects or not objects or not all(slots.values()):
            summary.counts["not_found"] += 1
            continue
        summary.counts["kept"] += 1
        for subject, obj in product(subjects, objects):
            qualifiers = tuple((slot, spans[0]) for slot, spans in sorted(slots.items()))
            triple = Triple(subject, raw.predicate, obj, 1.0, qualifiers)
            key = (subject.start, subject.end, raw.predicate, obj.start, obj.end, qualifiers)
            summary.counts["duplicate"] += key in triples
            triples[key] = triple
    return Example(text, list(triples.values()))


# ---------------------------------------------------------------- file formats


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 (byte {error.start}); save the file as UTF-8") from None


def json_lines(path: Path) -> list[tuple[str, Any]]:
    """(location, parsed object) for every non-empty line."""
    records = []
    with io.StringIO(read_text(path)) as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    records.append((f"{path}:{number}", json.loads(line)))
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}:{number}: not valid JSON ({error.msg}); fix or remove that line") from None
    return records


def load_records(path: Path) -> list[tuple[str, Any]]:
    """(location, item) for a JSON list, a single JSON object or JSON lines."""
    content = read_text(path)
    try:
        whole = json.loads(content)
    except json.JSONDecodeError as error:
        if content.lstrip().startswith("["):
            raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        return json_lines(path)
    if isinstance(whole, list):
        return [(f"{path}: item {index}", item) for index, item in enumerate(whole)]
    return [(f"{path}:1", whole)]


def detect_format(records: list[tuple[str, Any]]) -> str:
    if not records:
        return "jsonl"
    location, item = records[0]
    if not isinstance(item, dict):
        raise DataError(f"{location}: expected a JSON object per sentence")
    if "spo_list" in item:
        objects = [spo.get("object") for spo in item["spo_list"] if isinstance(spo, dict)]
        return "duie2" if any(isinstance(obj, dict) for obj in objects) else "duie1"
    if "triple_list" in item:
        return "casrel"
    if "tokens" in item and "tags" in item:
        return "conll04"
    if "triples" in item:
        return "jsonl"
    if "entities" in item and "relations" in item:
        return "doccano"
    if "data" in item and ("annotations" in item or "predictions" in item):
        return "labelstudio"
    raise DataError(
        f"{location}: cannot tell the format (keys {sorted(item)}); pass --format, one of {', '.join(FORMATS)}"
    )


def field_of(item: dict, key: str, location: str) -> Any:
    if not isinstance(item, dict) or key not in item:
        raise DataError(f"{location}: missing '{key}'")
    return item[key]


def parse_duie(item: dict, location: str) -> tuple[str, list[RawTriple]]:
    triples = []
    for spo in field_of(item, "spo_list", location):
        obj, obj_type = field_of(spo, "object", location), spo.get("object_type", "")
        if isinstance(obj, dict):  # DuIE 2.0: {"@value": ..., "inWork": ...}
            value = field_of(obj, VALUE_SLOT, location)
            qualifiers = {slot: text for slot, text in obj.items() if slot != VALUE_SLOT and text}
            obj_type = obj_type.get(VALUE_SLOT, "") if isinstance(obj_type, dict) else obj_type
        else:
            value, qualifiers = obj, {}
        triples.append(
            RawTriple(
                str(field_of(spo, "subject", location)),
                str(field_of(spo, "predicate", location)),
                str(value),
                spo.get("subject_type", ""),
                obj_type,
                qualifiers,
            )
        )
    return field_of(item, "text", location), triples


def parse_casrel(item: dict, location: str) -> tuple[str, list[RawTriple]]:
    triples = []
    for triple in field_of(item, "triple_list", location):
        if not isinstance(triple, list) or len(triple) != 3:
            raise DataError(f"{location}: a triple must be [subject, relation, object], got {triple!r}")
        triples.append(RawTriple(str(triple[0]), str(triple[1]), str(triple[2])))
    return field_of(item, "text", location), triples


def parse_conll04(item: dict, location: str) -> tuple[str, list[RawTriple]]:
    tokens, tags = field_of(item, "tokens", location), field_of(item, "tags", location)
    if len(tokens) != len(tags):
        raise DataError(f"{location}: {len(tokens)} tokens but {len(tags)} tags")
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    text = " ".join(tokens)
    entities, begin = [], None
    for index, tag in enumerate(tags):  # BILOU: B-X I-X L-X, U-X for one token, O outside
        if tag[:2] in ("B-", "U-"):
            begin = index
        if tag[:2] in ("L-", "U-") and begin is not None:
            start, end = starts[begin], starts[index] + len(tokens[index])
            entities.append(Entity(text[start:end], start, end, tag[2:]))
            begin = None
    triples = []
    for relation in field_of(item, "relations", location):
        head, tail = field_of(relation, "head", location), field_of(relation, "tail", location)
        if not (0 <= head < len(entities) and 0 <= tail < len(entities)):
            raise DataError(f"{location}: relation {relation} points past the {len(entities)} entities")
        subject, obj = entities[head], entities[tail]
        triples.append(RawTriple(subject, field_of(relation, "type", location), obj, subject.type, obj.type))
    return text, triples


def parse_jsonl(item: dict, location: str) -> tuple[str, list[RawTriple]]:
    text = field_of(item, "text", location)

    def entity(value: Any, name: str) -> str | Entity:
        if isinstance(value, str):
            return value
        surface = field_of(value, "text", f"{location} {name}")
        if "start" not in value:
            return surface
        start, end = value["start"], value.get("end", value["start"] + len(surface))
        if text[start:end] != surface:
            raise DataError(f"{location}: {name} '{surface}' is not text[{start}:{end}] ('{text[start:end]}')")
        return Entity(surface, start, end, value.get("type", ""))

    triples = []
    for triple in field_of(item, "triples", location):
        subject, obj = (
            entity(field_of(triple, "subject", location), "subject"),
            entity(field_of(triple, "object", location), "object"),
        )
        qualifiers = {slot: entity(value, slot) for slot, value in triple.get("qualifiers", {}).items()}
        triples.append(
            RawTriple(
                subject,
                field_of(triple, "predicate", location),
                obj,
                getattr(subject, "type", ""),
                getattr(obj, "type", ""),
                qualifiers,
            )
        )
    return text, triples


def span(text: str, start: Any, end: Any, label: str, location: str) -> Entity:
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
        raise DataError(f"{location}: entity offsets {start}..{end} do not lie in the text of {len(text)} characters")
    return Entity(text[start:end], start, end, label)


def parse_doccano(item: dict, location: str) -> tuple[str, list[RawTriple]]:
    """doccano's relation-extraction JSONL (also what PaddleNLP UIE trains from): ``entities`` with
    ``start_offset``/``end_offset``/``label`` and ``relations`` with ``from_id``/``to_id``/``type``."""
    text = field_of(item, "text", location)
    entities = {
        entity["id"]: span(text, entity["start_offset"], entity["end_offset"], entity.get("label", ""), location)
        for entity in field_of(item, "entities", location)
    }
    triples = []
    for relation in item.get("relations", []):
        ends = [relation["from_id"], relation["to_id"]]
        if not all(end in entities for end in ends):
            raise DataError(f"{location}: relation {relation.get('id')} points to an entity id that is not there")
        subject, obj = (entities[end] for end in ends)
        triples.append(RawTriple(subject, relation["type"], obj, subject.type, obj.type))
    return text, triples


def parse_label_studio(item: dict, location: str) -> tuple[str, list[RawTriple]]:
    """A task of Label Studio's JSON export from a relation project: labelled spans (``labels`` results) and
    ``relation`` results between them. Direction ``right`` reads from -> to, ``left`` to -> from, ``bi``
    both ways; a relation with no label says nothing about its predicate and is left out."""
    data = field_of(item, "data", location)
    text = (
        data.get("text")
        if isinstance(data.get("text"), str)
        else next((value for value in data.values() if isinstance(value, str)), None)
    )
    if text is None:
        raise DataError(f"{location}: the task's data holds no text")
    annotations = [a for a in item.get("annotations", []) if not a.get("was_cancelled")]
    results = annotations[0]["result"] if annotations else []
    entities = {
        result["id"]: span(
            text, result["value"]["start"], result["value"]["end"], result["value"]["labels"][0], location
        )
        for result in results
        if result.get("type") == "labels"
    }
    triples = []
    for result in results:
        if result.get("type") != "relation" or not result.get("labels"):
            continue
        ends = [result["from_id"], result["to_id"]]
        if not all(end in entities for end in ends):
            raise DataError(f"{location}: a relation points to a region id that is not there")
        direction = result.get("direction", "right")
        pairs = {"right": [ends], "left": [ends[::-1]], "bi": [ends, ends[::-1]]}.get(direction, [ends])
        for label in result["labels"]:
            for first, second in pairs:
                subject, obj = entities[first], entities[second]
                triples.append(RawTriple(subject, label, obj, subject.type, obj.type))
    return text, triples


PARSERS = {
    "duie1": parse_duie,
    "duie2": parse_duie,
    "casrel": parse_casrel,
    "conll04": parse_conll04,
    "jsonl": parse_jsonl,
    "doccano": parse_doccano,
    "labelstudio": parse_label_studio,
}


def read_dataset(
    path: str | Path, format: str | None = None
) -> tuple[list[Example], list[RawTriple], str, ReadSummary]:
    """Read a dataset file: examples, the raw triples (for deriving a schema), the format and a summary."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format '{format}'; use one of {', '.join(FORMATS)}")
    records = load_records(path)
    if not records:
        raise DataError(f"{path}: the file holds no sentences")
    format = format or detect_format(records)
    summary, examples, raw_all = ReadSummary(), [], []
    for location, item in records:
        try:
            text, raw_triples = PARSERS[format](item, location)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as error:
            if isinstance(error, DataError):
                raise
            raise DataError(f"{location}: not a valid {format} record ({error})") from None
        if not isinstance(text, str):
            raise DataError(f"{location}: 'text' must be a string")
        problem = lone_surrogate(text)
        if problem:
            raise DataError(f"{location}: the text {problem}")
        raw_all.extend(raw_triples)
        examples.append(build_example(text, raw_triples, summary))
    return examples, raw_all, format, summary


# ---------------------------------------------------------------- schemas


def read_schema(path: str | Path) -> list[Relation]:
    """Relations from a DuIE 1/2 or project schema (JSON lines), a CasRel rel2id.json or CoNLL04 types file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such schema file; check the path or leave --schema out")
    records = load_records(path)
    if len(records) == 1 and isinstance(records[0][1], dict) and "relations" in records[0][1]:
        return [Relation(name) for name in records[0][1]["relations"]]  # CoNLL04 types
    if records and isinstance(records[0][1], dict) and "predicate" in records[0][1]:
        relations = []
        for location, item in records:
            object_type = item.get("object_type", "")
            slots = object_type if isinstance(object_type, dict) else {VALUE_SLOT: object_type}
            predicate, subject_type = field_of(item, "predicate", location), item.get("subject_type", "")
            relations += [Relation(predicate, subject_type, kind, slot) for slot, kind in slots.items()]
        return relations
    tables = [table for _, table in records if isinstance(table, dict) and table] if len(records) <= 2 else []
    for table in tables:  # rel2id.json: [id2rel, rel2id], or [rel2id] alone
        if all(isinstance(v, int) for v in table.values()):
            return [Relation(name) for name in sorted(table, key=table.__getitem__)]  # {relation: id}
        if all(k.isdigit() and isinstance(v, str) for k, v in table.items()):
            return [Relation(table[key]) for key in sorted(table, key=int)]  # {id: relation}
    raise DataError(f"{path}: not a schema this tool reads (DuIE schema lines, rel2id.json, CoNLL04 types)")


def find_schema(data_path: Path) -> Path | None:
    """A schema file of a known name beside the data file, if there is one."""
    for name in SCHEMA_FILES:
        candidate = Path(data_path).parent / name
        if candidate.is_file():
            return candidate
    return None


def derive_schema(raw_triples: list[RawTriple]) -> list[Relation]:
    """Relations seen in the data, with the most common entity types for each."""
    types: dict[str, Counter] = {}
    slots: dict[str, set[str]] = {}
    for raw in raw_triples:
        types.setdefault(raw.predicate, Counter())[(raw.subject_type, raw.object_type)] += 1
        slots.setdefault(raw.predicate, set()).update(raw.qualifiers)
    relations = []
    for predicate in sorted(types):
        subject_type, object_type = types[predicate].most_common(1)[0][0]
        relations.append(Relation(predicate, subject_type, object_type))
        relations += [Relation(predicate, "", "", slot) for slot in sorted(slots[predicate])]
    return relations


def with_types_from(relations: list[Relation], derived: list[Relation]) -> list[Relation]:
    """A schema's relations, with the entity types the data gives where the schema names none (a CoNLL04
    types file lists relations without their argument types)."""
    seen = {(relation.predicate, relation.slot): relation for relation in derived}
    completed = []
    for relation in relations:
        known = seen.get((relation.predicate, relation.slot))
        subject_type = relation.subject_type or (known.subject_type if known else "")
        object_type = relation.object_type or (known.object_type if known else "")
        completed.append(Relation(relation.predicate, subject_type, object_type, relation.slot))
    return completed


def check_schema(relations: list[Relation], examples: list[Example], path: Path) -> None:
    """Fail when the data uses predicates or complex-object slots that the schema does not have."""
    known = {relation.label for relation in relations}
    missing = Counter()
    for example in examples:
        for triple in example.triples:
            labels = [triple.predicate] + [relation_label(triple.predicate, slot) for slot, _ in triple.qualifiers]
            missing.update(label for label in labels if label not in known)
    if missing:
        names = ", ".join(f"'{name}'" for name, _ in missing.most_common(5))
        raise DataError(
            f"{path}: {sum(missing.values())} triples use predicates not in the schema ({names}); "
            "pass the matching --schema or leave it out to take the predicates from the training data"
        )


def fingerprint(role: str, path: str | Path | None) -> dict | None:
    """A data file as the model card names it: its role, path and sha256."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"role": role, "path": str(path), "sha256": digest.hexdigest()}


# ---------------------------------------------------------------- writing the project's own format


def write_jsonl(examples: list[Example], path: Path) -> None:
    """Write examples in the project's own JSONL format."""

    def entity(value: Entity) -> dict:
        return {"text": value.text, "start": value.start, "end": value.end, "type": value.type}

    with open(path, "w", encoding="utf-8") as handle:
        for example in examples:
            triples = [
                {"subject": entity(t.subject), "predicate": t.predicate, "object": entity(t.object)}
                for t in example.triples
            ]
            handle.write(json.dumps({"text": example.text, "triples": triples}, ensure_ascii=False) + "\n")
