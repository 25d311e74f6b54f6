"""A generator of labelled sample sentences in English and Chinese, written for this project.

It backs the tests (a model must overfit them) and the demo model. Sentences come from templates
over name lists, so every entity's character span is known by construction; several templates put
one subject into two triples, or one entity in the subject and object role of different triples.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from triplex.model.schema import Entity, Relation, Triple
from triplex.training.data import Example

PEOPLE = [
    "Alice Moreau",
    "Daniel Okafor",
    "Mei Tanaka",
    "Carlos Ruiz",
    "Ingrid Holm",
    "Samuel Reyes",
    "Priya Nair",
    "Lukas Brandt",
    "Fatima Haddad",
    "Oliver Grant",
    "Elena Petrova",
    "Jonas Berg",
    "Amara Diallo",
    "Tom Becker",
]
CITIES = ["Lyon", "Nairobi", "Osaka", "Valencia", "Bergen", "Porto", "Leeds", "Quito", "Graz", "Adelaide", "Tartu"]
COUNTRIES = ["France", "Kenya", "Japan", "Spain", "Norway", "Portugal", "England", "Ecuador", "Austria", "Estonia"]
COMPANIES = ["Northwind Labs", "Bluefield Motors", "Kestrel Foods", "Orbital Paper", "Greenway Bank", "Solace Audio"]
ZH_PEOPLE = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏", "周杰", "吴昊", "徐丽", "孙鹏"]
ZH_CITIES = ["杭州", "成都", "西安", "南京", "武汉", "苏州", "青岛", "厦门", "长沙", "昆明"]
ZH_COMPANIES = ["星河科技", "远航汽车", "青禾食品", "云帆传媒", "海岳银行", "松石音响"]

RELATIONS = [
    Relation("born_in", "person", "city"),
    Relation("works_for", "person", "company"),
    Relation("located_in", "city", "country"),
    Relation("founded_by", "company", "person"),
    Relation("出生地", "人物", "地点"),
    Relation("任职于", "人物", "企业"),
    Relation("总部", "企业", "地点"),
]
TYPES = {relation.predicate: relation for relation in RELATIONS}

# {slot} placeholders; each template lists its triples as (subject slot, predicate, object slot).
TEMPLATES = [
    ("{p} was born in {c}.", [("p", "born_in", "c")]),
    ("{p}, who was born in {c}, works for {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{o} was founded by {p} in {c}, a city in {n}.", [("o", "founded_by", "p"), ("c", "located_in", "n")]),
    ("Born in {c}, {p} later joined {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{c} is a city in {n}, and {p} was born there.", [("c", "located_in", "n"), ("p", "born_in", "c")]),
    ("Since 2019 {p} has worked for {o}, which {q} founded.", [("p", "works_for", "o"), ("o", "founded_by", "q")]),
    ("The engineer {p} works for {o}.", [("p", "works_for", "o")]),
    ("We visited {c} in {n} last spring.", [("c", "located_in", "n")]),
    ("{zp}出生于{zc}，现任职于{zo}。", [("zp", "出生地", "zc"), ("zp", "任职于", "zo")]),
    ("{zo}的总部位于{zc}，{zp}在那里工作。", [("zo", "总部", "zc"), ("zp", "任职于", "zo")]),
    ("据报道，{zp}出生在{zc}。", [("zp", "出生地", "zc")]),
    ("{zp}加入了{zo}，该公司总部设在{zc}。", [("zp", "任职于", "zo"), ("zo", "总部", "zc")]),
]
POOLS = {
    "p": PEOPLE,
    "q": PEOPLE,
    "c": CITIES,
    "n": COUNTRIES,
    "o": COMPANIES,
    "zp": ZH_PEOPLE,
    "zc": ZH_CITIES,
    "zo": ZH_COMPANIES,
}


def fill(template: str, values: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill the template; returns the text and where each slot's first filling stands."""
    text, spans, position = "", {}, 0
    while position < len(template):
        opening = template.find("{", position)
        if opening < 0:
            text += template[position:]
            break
        closing = template.index("}", opening)
        slot = template[opening + 1 : closing]
        text += template[position:opening]
        spans.setdefault(slot, (len(text), len(text) + len(values[slot])))
        text += values[slot]
        position = closing + 1
    return text, spans


def labelled(form: str, triples: list[tuple[str, str, str]], values: dict[str, str], types: dict) -> Example:
    """The form filled with ``values``, and its triples with the entity types of ``types`` (predicate ->
    relation). The first letter is capitalised ("the University of ..." opening a sentence)."""
    text, spans = fill(form, values)
    text = text[:1].upper() + text[1:]

    def entity(slot: str, kind: str) -> Entity:
        start, end = spans[slot]
        return Entity(text[start:end], start, end, kind)

    found = [
        Triple(entity(subject, types[predicate].subject_type), predicate, entity(obj, types[predicate].object_type))
        for subject, predicate, obj in triples
    ]
    return Example(text, found)


def generate(count: int, seed: int = 0) -> list[Example]:
    """``count`` labelled sentences, the same for the same seed."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        template, triples = rng.choice(TEMPLATES)
        values = {slot: rng.choice(pool) for slot, pool in POOLS.items()}
        while values["q"] == values["p"]:
            values["q"] = rng.choice(PEOPLE)
        examples.append(labelled(template, triples, values, TYPES))
    return examples


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


def write_schema(path: Path, relations: list[Relation] = RELATIONS) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for relation in relations:
            row = {
                "predicate": relation.predicate,
                "subject_type": relation.subject_type,
                "object_type": relation.object_type,
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
