"""Sentences for the demo model: what it is taught, and what it is judged on.

The demo knows four English relations (born_in, works_for, located_in, founded_by) between people,
cities, countries and organisations. It learns from forms composed from parts (``composed_form``) and
from ``TRAIN_FORMS``, filled with names from the first half of each name list, plus negative sentences
(``NEGATIVE_FORMS``: the same kinds of names in sentences that state none of these relations). It is
judged on ``HELD_OUT_FORMS``, filled with names from the second half: forms and names it never saw.

Chinese is taught in a few forms only (出生地, 任职于, 总部), and the demo answers those forms alone:
MiniLM's English vocabulary lacks most Chinese characters (听说 becomes [UNK] [UNK]), so nothing beyond
the forms can be learnt. For Chinese, train a multilingual encoder with ``triplex train``.
"""

from __future__ import annotations

import random
import re

from ..model.schema import Entity, Relation, Triple
from .data import Example

RELATIONS = [
    Relation("born_in", "person", "city"),
    Relation("works_for", "person", "organisation"),
    Relation("located_in", "city", "country"),
    Relation("founded_by", "organisation", "person"),
    Relation("出生地", "人物", "地点"),
    Relation("任职于", "人物", "机构"),
    Relation("总部", "机构", "地点"),
]
TYPES = {relation.predicate: relation for relation in RELATIONS}

FIRST = ["Alice", "Daniel", "Mei", "Carlos", "Ingrid", "Samuel", "Priya", "Lukas", "Fatima", "Oliver", "Elena",
         "Jonas", "Amara", "Tom", "Grace", "Hiroshi", "Nadia", "Pedro", "Sofia", "Kwame", "Barack", "Marie",
         "Ahmed", "Laura", "Ivan", "Chloe", "Rahul", "Anna", "Diego", "Yuki", "Omar", "Hannah"]  # fmt: skip
LAST = ["Moreau", "Okafor", "Tanaka", "Ruiz", "Holm", "Reyes", "Nair", "Brandt", "Haddad", "Grant", "Petrova",
        "Berg", "Diallo", "Becker", "Curie", "Silva", "Kowalski", "Novak", "Mensah", "Fischer", "Lopez", "Obama",
        "Sato", "Khan", "Dubois", "Rossi", "Jensen", "Murphy", "Ivanova", "Costa", "Adeyemi", "Larsen"]  # fmt: skip
CITIES = ["Lyon", "Nairobi", "Osaka", "Valencia", "Bergen", "Porto", "Leeds", "Quito", "Graz", "Adelaide", "Tartu",
          "Munich", "Toronto", "Lagos", "Kyoto", "Seville", "Krakow", "Accra", "Geneva", "Boston", "Mumbai",
          "Seattle", "Marseille", "Turin", "Bilbao", "Dublin", "Hamburg", "Lima", "Cork", "Malmo", "Brno", "Perth",
          "Ghent", "Utrecht", "Salzburg", "Kumasi", "Nagoya", "Honolulu", "Chicago", "Denver"]  # fmt: skip
COUNTRIES = ["France", "Kenya", "Japan", "Spain", "Norway", "Portugal", "England", "Ecuador", "Austria", "Estonia",
             "Germany", "Canada", "Nigeria", "Poland", "Ghana", "Switzerland", "India", "Italy", "Ireland",
             "the United States", "Peru", "Sweden", "Belgium", "Australia"]  # fmt: skip
ORGANISATION_NAMES = ["Northwind", "Bluefield", "Kestrel", "Orbital", "Greenway", "Solace", "Harbor", "Vantage",
                      "Pinecrest", "Atlas", "Meridian", "Copperleaf", "Lumen", "Silverline", "Redwood", "Summit",
                      "Ironbridge", "Clearwater", "Oakmont", "Brightpath", "Falcon", "Granite", "Horizon",
                      "Juniper"]  # fmt: skip
ORGANISATION_KINDS = ["Labs", "Motors", "Foods", "Bank", "Audio", "Health", "Robotics", "Media", "Freight",
                      "Insurance", "Games", "Pharma", "Airways", "Analytics", "Press", "Energy"]  # fmt: skip
INSTITUTIONS = ["the University of {}", "the {} City Museum", "the {} Philharmonic", "the Bank of {}"]
ZH_SURNAMES = ["张", "王", "李", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭", "何",
               "高", "林", "罗"]  # fmt: skip
ZH_GIVEN = ["三", "伟", "芳", "娜", "洋", "静", "帆", "磊", "敏", "杰", "昊", "丽", "鹏", "婷", "强", "雪", "晨光",
            "子涵", "建国", "思远", "雨桐", "志明"]  # fmt: skip
ZH_CITIES = ["杭州", "成都", "西安", "南京", "武汉", "苏州", "青岛", "厦门", "长沙", "昆明", "北京", "上海", "广州",
             "深圳", "天津", "重庆", "合肥", "济南", "福州", "大连", "沈阳", "郑州", "宁波", "无锡"]  # fmt: skip
ZH_ORGANISATION_NAMES = ["星河", "远航", "青禾", "云帆", "海岳", "松石", "华光", "东方", "蓝海", "北辰", "金石", "清风",
                         "天成", "恒远", "瑞丰", "新元", "万象", "龙腾", "紫光", "长青"]  # fmt: skip
ZH_ORGANISATION_KINDS = ["科技", "汽车", "食品", "传媒", "银行", "音响", "电子", "物流", "保险", "医药", "证券",
                         "出版社"]  # fmt: skip

# Each form lists its triples as (subject slot, predicate, object slot); slots p and q are people.
TRAIN_FORMS = [
    ("{p} was born in {c}.", [("p", "born_in", "c")]),
    ("{p}, who was born in {c}, works for {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{o} was founded by {q} in {c}, a city in {n}.", [("o", "founded_by", "q"), ("c", "located_in", "n")]),
    ("Born in {c}, {p} later joined {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{c} is a city in {n}, and {p} was born there.", [("c", "located_in", "n"), ("p", "born_in", "c")]),
    ("Since 2019 {p} has worked for {o}, which {q} founded.", [("p", "works_for", "o"), ("o", "founded_by", "q")]),
    ("The engineer {p} works for {o}.", [("p", "works_for", "o")]),
    ("We visited {c} in {n} last spring.", [("c", "located_in", "n")]),
    ("{p} is an analyst at {o}.", [("p", "works_for", "o")]),
    ("{q} started {o} in 2004, and {p} joined it soon after.", [("o", "founded_by", "q"), ("p", "works_for", "o")]),
    ("{p} grew up far from {c}, the city where she was born.", [("p", "born_in", "c")]),
    ("Located in {n}, {c} is known for its harbour.", [("c", "located_in", "n")]),
    ("{o}, the company {q} set up, hired {p} as a designer.", [("o", "founded_by", "q"), ("p", "works_for", "o")]),
    ("A native of {c}, {p} moved abroad at twenty.", [("p", "born_in", "c")]),
    ("{p} has been employed by {o} for ten years.", [("p", "works_for", "o")]),
    ("The founder of {o} is {q}.", [("o", "founded_by", "q")]),
    ("{c}, {n}, hosted the meeting.", [("c", "located_in", "n")]),
    ("{p} (born in {c}) now leads a team at {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{o} employs {p} as a nurse.", [("p", "works_for", "o")]),
    ("The birthplace of {p} is {c}.", [("p", "born_in", "c")]),
    ("{c} lies in the south of {n}.", [("c", "located_in", "n")]),
    ("{q} established {o} after leaving school.", [("o", "founded_by", "q")]),
    ("In 1998 {p} took a job at {o}.", [("p", "works_for", "o")]),
    ("{p}, a lawyer at {o}, spoke to reporters.", [("p", "works_for", "o")]),
    ("{q} is the founder of {o}, and {p} works there.", [("o", "founded_by", "q"), ("p", "works_for", "o")]),
    ("Most people in {c}, a town in {n}, know {p}.", [("c", "located_in", "n")]),
    ("{p} came into the world in {c} in 1975.", [("p", "born_in", "c")]),
    ("{zp}出生于{zc}。", [("zp", "出生地", "zc")]),
    ("{zp}出生于{zc}，现任职于{zo}。", [("zp", "出生地", "zc"), ("zp", "任职于", "zo")]),
    ("{zo}的总部位于{zc}，{zp}在那里工作。", [("zo", "总部", "zc"), ("zp", "任职于", "zo")]),
    ("据报道，{zp}出生在{zc}。", [("zp", "出生地", "zc")]),
    ("{zp}加入了{zo}，该公司总部设在{zc}。", [("zp", "任职于", "zo"), ("zo", "总部", "zc")]),
    ("{zp}生于{zc}。", [("zp", "出生地", "zc")]),
    ("{zp}是{zo}的一名员工。", [("zp", "任职于", "zo")]),
    ("{zo}总部在{zc}。", [("zo", "总部", "zc")]),
    ("{o} hired {p} in March.", [("p", "works_for", "o")]),
    ("{o}, which {q} founded in 1990, opened an office in {c}.", [("o", "founded_by", "q")]),
]
# Two people's own facts in one sentence, and a fact given by a pronoun in the next sentence: the model must
# tell whose fact is whose (texts of several such parts are built by ``several_people``).
SEVERAL_FORMS = [
    ("{p} was born in {c}, and {q} was born in {c2}.", [("p", "born_in", "c"), ("q", "born_in", "c2")]),
    ("{p} works for {o}, while {q} works for {o2}.", [("p", "works_for", "o"), ("q", "works_for", "o2")]),
    ("{p}, who works for {o}, married {q}, a native of {c}.", [("p", "works_for", "o"), ("q", "born_in", "c")]),
    ("Unlike {q}, who was born in {c2}, {p} was born in {c}.", [("q", "born_in", "c2"), ("p", "born_in", "c")]),
    ("{p} was born in {c}. She now works for {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{p} works for {o}. He was born in {c}.", [("p", "works_for", "o"), ("p", "born_in", "c")]),
    ("{q} founded {o}. Her brother {p} was born in {c}.", [("o", "founded_by", "q"), ("p", "born_in", "c")]),
    ("{p} joined {o2} after {q} left {o}.", [("p", "works_for", "o2")]),
    ("{zp}出生于{zc}，{zq}出生于{zc2}。", [("zp", "出生地", "zc"), ("zq", "出生地", "zc2")]),
    ("{zp}出生于{zc}。他现在任职于{zo}。", [("zp", "出生地", "zc"), ("zp", "任职于", "zo")]),
]
HELD_OUT_SEVERAL_FORMS = [
    ("{p} was born in {c}; {q}, by contrast, was born in {c2}.", [("p", "born_in", "c"), ("q", "born_in", "c2")]),
    ("{q} is employed by {o2}, and {p} by {o}.", [("q", "works_for", "o2"), ("p", "works_for", "o")]),
    ("{p} was born in {c}. Today she is employed by {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{p}, a native of {c}, met {q}, who works for {o}.", [("p", "born_in", "c"), ("q", "works_for", "o")]),
]
# Marks set apart by a space at the start, at the end or beside a name; never part of an entity.
NOISE = ["😀", "🎉", "★", "•", "→", "✔", "👍🏽", "👨‍👩‍👧", "𝐀", "#1", "(!)", "~"]
# The same kinds of names in sentences that state none of the relations: the demo must stay silent.
NEGATIVE_FORMS = [
    "{p} likes jazz and long walks.",
    "{p} and {q} met for coffee on Tuesday.",
    "The weather in {c} was mild this week.",
    "{o} reported higher sales this quarter.",
    "{p} wrote a book about {n}.",
    "Tickets to {c} are cheaper in winter.",
    "{p} visited {c} twice last year.",
    "{o} and {o2} signed a supply contract.",
    "{p} praised {o} for its customer service.",
    "The train from {c} to {c2} takes three hours.",
    "{n} won the match against {n2}.",
    "{p} lives near the river.",
    "Nobody at {o} expected the storm.",
    "{zp}喜欢在周末打篮球。",
    "{zc}今天的天气很好。",
    "{zo}发布了年度报告。",
    "{zp}和{zq}一起去了{zc}旅游。",
    "今天下午开会讨论预算。",
    "The committee will meet again next month.",
    "Prices rose by two percent in March.",
    "{p} flew from {c} to {c2} on Monday.",
    "Coffee from {n} is popular in {c}.",
    "{p} read about {o} in the paper.",
    "The road from {c} to {c2} was closed for repairs.",
    "Famous across {n}, the band played in {c} last night.",
    "{q} met {p} at a conference.",
    "{zp}昨天去了{zc}出差。",
    "{zo}在{zc}开了一家新店。",
    "{zp}打算明年去{zc}看看。",
    "{zp}在会上表扬了{zq}。",
    "{c} and {c2} are both busy ports.",
    "Visitors to {n} often stop in {c}.",
]
HELD_OUT_FORMS = [
    ("{p} was born in {c} and worked for {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("According to her biography, {p} was born in {c}.", [("p", "born_in", "c")]),
    ("{o}, which was founded by {q}, hired {p} last year.", [("o", "founded_by", "q"), ("p", "works_for", "o")]),
    (
        "Before moving away, {p}, a native of {c}, was employed by {o}.",
        [("p", "born_in", "c"), ("p", "works_for", "o")],
    ),
    ("My colleague {p} works for {o} these days.", [("p", "works_for", "o")]),
    ("The small city of {c} lies in {n}.", [("c", "located_in", "n")]),
    ("{q}, the founder of {o}, gave a speech yesterday.", [("o", "founded_by", "q")]),
    ("Last year {o} employed {p} and two other chemists.", [("p", "works_for", "o")]),
    ("Born in {c}, {p} has worked for {o} since 2015.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{p} now works at {o}, the firm {q} founded.", [("p", "works_for", "o"), ("o", "founded_by", "q")]),
]
# Words a training form may carry at one of its spaces (``with_filler``), so that the model learns facts
# from the words around the names, not from a form's exact shape. None of them is in a held-out form.
FILLERS = ["reportedly", "in fact", "by then", "as expected", "once again", "officially", "quietly", "in 2011",
           "some say", "for a while", "at the time", "indeed", "of course", "it seems", "again", "also"]  # fmt: skip
FILLER_SHARE = 0.5  # of training forms (English ones: Chinese has no spaces to put them at)


# Sentences composed from parts (``composed_form``): a person's facts as verb phrases, joined in a clause, a
# coordination, a relative clause, a fronted phrase or a pronoun's next sentence; two people's facts in one
# sentence (the second verb left out now and then: "{p} works for {o}, and {q} for {o2}"); facts told from the
# organisation's side. They vary the words and the order that tell a fact; no held-out form is among them (a
# test checks it).
PERSON_FACTS = {
    "born_in": ["was born in {c}", "came into the world in {c}", "is a native of {c}", "was born and raised in {c}",
                "hails from {c}", "was born in the city of {c}"],
    "works_for": ["works for {o}", "is an analyst at {o}", "took a job at {o}", "joined {o}", "has worked for {o}",
                  "is a manager at {o}", "was recruited by {o}", "got a job with {o}", "is on the staff of {o}",
                  "signed on with {o}", "leads a team at {o}", "has been employed by {o}", "is a designer at {o}",
                  "started working for {o}", "is an engineer with {o}", "accepted a post at {o}"],
    "founded_by": ["founded {o}", "started {o}", "set up {o}", "established {o}", "created {o}", "launched {o}",
                   "is the founder of {o}", "co-founded {o}", "built {o} from scratch"],
}  # fmt: skip
# the verb left out for a second person: "..., and {q} for {o2}"
GAPPED = {"works for {o}": "for {o}", "was recruited by {o}": "by {o}", "is a manager at {o}": "at {o}",
          "has worked for {o}": "for {o}", "has been employed by {o}": "by {o}", "got a job with {o}": "with {o}",
          "is an analyst at {o}": "at {o}", "was born in {c}": "in {c}", "hails from {c}": "from {c}"}  # fmt: skip
FRONTED = ["Born in {c}", "A native of {c}", "Born and raised in {c}", "Having been born in {c}"]
FOUNDING_APPOSITIONS = ["a company {q} started", "the business {q} set up", "a startup {q} launched",
                        "the agency {q} created", "a studio {q} established", "the group {q} co-founded"]  # fmt: skip
ORGANISATION_FACTS = {  # the organisation told first; {p} works for it, or {q} founded it
    "works_for": ["{o} hired {p}", "{o} recruited {p}", "{o} took on {p}", "{o} employs {p}", "{o} pays {p}",
                  "{o} brought in {p}", "{o} appointed {p}"],
    "founded_by": ["{o} was founded by {q}", "{o} was started by {q}", "{o} was set up by {q}",
                   "{o} was established by {q}", "{o} was launched by {q}", "{o} was created by {q}"],
}  # fmt: skip
TAILS = ["", "", " in 2012", " as a consultant", " after a long search", " along with three interns"]
PLACE_FACTS = ["{c} is a city in {n}", "{c} lies in {n}", "{c} is in {n}", "{c} is part of {n}"]
OPENINGS = ["In 2010", "Years ago", "Last spring", "As the records show", "In the end", "Back then"]
COMPOSED_SHARE = 0.75  # of training forms drawn (the rest from TRAIN_FORMS and SEVERAL_FORMS)
Form = tuple[str, list[tuple[str, str, str]]]


def composed_form(rng: random.Random) -> Form:
    """A form built from the parts above, with its triples."""
    kind = rng.random()
    if kind < 0.1:
        return f"{rng.choice(PLACE_FACTS)}.", [("c", "located_in", "n")]
    if kind < 0.3:
        return organisation_first(rng)
    if kind < 0.45:
        return two_people(rng)
    if kind < 0.55:
        return founded_apposition(rng)
    return one_person(rng)


def one_person(rng: random.Random) -> Form:
    """One person's one or two facts: a clause, a coordination, a relative clause, a fronted phrase or a
    pronoun's next sentence."""
    relations = rng.sample(list(PERSON_FACTS), 2 if rng.random() < 0.7 else 1)
    person = "q" if "founded_by" in relations else "p"
    organisations = ["o", "o2"]  # a founder and an employee of two organisations when one person has both
    phrases, triples = [], []
    for relation in relations:
        organisation = organisations.pop(0) if relation != "born_in" else "o"
        phrases.append(rng.choice(PERSON_FACTS[relation]).replace("{o}", f"{{{organisation}}}"))
        triples.append(person_triple(relation, person, organisation))
    x = f"{{{person}}}"
    if len(phrases) == 1:
        opening = f"{rng.choice(OPENINGS)}, " if rng.random() < 0.3 else ""
        return f"{opening}{x} {phrases[0]}.", triples
    if relations[0] == "born_in" and rng.random() < 0.3:
        return f"{rng.choice(FRONTED)}, {x} {phrases[1]}.", triples
    frames = ["{x} {a} and {b}.", "{x}, who {a}, {b}.", "{x} {a}. {pronoun} {b}."]
    frame = rng.choice(frames if relations[1] == "born_in" else [*frames, "{x} {a}, and later {b}."])
    return frame.format(x=x, a=phrases[0], b=phrases[1], pronoun=rng.choice(["She", "He"])), triples


def organisation_first(rng: random.Random) -> Form:
    """The organisation told first: it hired {p} or {q} founded it; now and then a pronoun's birthplace next."""
    relation = rng.choice(list(ORGANISATION_FACTS))
    clause, person = rng.choice(ORGANISATION_FACTS[relation]), "p" if relation == "works_for" else "q"
    clause += rng.choice(TAILS) if relation == "works_for" else ""
    triples = [person_triple(relation, person, "o")]
    if rng.random() < 0.5:
        return f"{clause}.", triples
    born, pronoun = rng.choice(PERSON_FACTS["born_in"]), rng.choice(["She", "He"])
    return f"{clause}. {pronoun} {born}.", [*triples, person_triple("born_in", person, "o")]


def two_people(rng: random.Random) -> Form:
    """Two people's facts of one relation in one sentence, the second verb left out now and then."""
    relation = rng.choice(["born_in", "works_for"])
    first = rng.choice(PERSON_FACTS[relation])
    place, other = ("{c}", "{c2}") if relation == "born_in" else ("{o}", "{o2}")
    triples = [person_triple(relation, "p", "o"), ("q", relation, other[1:-1])]
    if first in GAPPED and rng.random() < 0.5:
        return f"{{p}} {first}, and {{q}} {GAPPED[first].replace(place, other)}.", triples
    second = rng.choice(PERSON_FACTS[relation]).replace(place, other)
    joint = rng.choice([", while", ", and", "; meanwhile,", ", whereas"])
    return f"{{p}} {first}{joint} {{q}} {second}.", triples


def founded_apposition(rng: random.Random) -> Form:
    """{p} works for {o}, an organisation {q} founded: the founder told after the organisation."""
    works = rng.choice(PERSON_FACTS["works_for"])
    return f"{{p}} {works}, {rng.choice(FOUNDING_APPOSITIONS)}.", [("p", "works_for", "o"), ("o", "founded_by", "q")]


def person_triple(relation: str, person: str, organisation: str) -> tuple[str, str, str]:
    """The triple of ``relation`` between the person slot and its place or organisation slot."""
    if relation == "born_in":
        return person, "born_in", "c"
    if relation == "works_for":
        return person, "works_for", organisation
    return organisation, "founded_by", person


PAIRED = {"q": "p", "c2": "c", "n2": "n", "o2": "o", "zq": "zp", "zc2": "zc"}  # a second name of the same kind


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


def halves(values: list[str], held_out: bool) -> list[str]:
    return values[len(values) // 2 :] if held_out else values[: len(values) // 2]


def name_pools(held_out: bool) -> dict[str, list[str]]:
    """Training names from the first half of each list; held-out names from the second half, so that
    held-out sentences hold names the model never saw."""
    people = [f"{first} {last}" for first in halves(FIRST, held_out) for last in halves(LAST, held_out)]
    cities = halves(CITIES, held_out)
    organisations = [f"{name} {kind}" for name in halves(ORGANISATION_NAMES, held_out) for kind in ORGANISATION_KINDS]
    organisations += [pattern.format(city) for pattern in INSTITUTIONS for city in cities]
    zh_people = [surname + given for surname in halves(ZH_SURNAMES, held_out) for given in ZH_GIVEN]
    zh_organisations = [
        name + kind for name in halves(ZH_ORGANISATION_NAMES, held_out) for kind in ZH_ORGANISATION_KINDS
    ]
    kinds = {
        "p": people,
        "c": cities,
        "n": halves(COUNTRIES, held_out),
        "o": organisations,
        "zp": zh_people,
        "zc": halves(ZH_CITIES, held_out),
        "zo": zh_organisations,
    }
    pools = {}  # each paired slot right after its first: the order in which the names are drawn
    for slot, names in kinds.items():
        pools[slot] = names
        pools.update({second: names for second, first in PAIRED.items() if first == slot})
    return pools


def distinct_values(rng: random.Random, pools: dict[str, list[str]]) -> dict[str, str]:
    """One name per slot; the paired slots (p and q, c and c2...) never hold the same name."""
    values = {slot: rng.choice(pool) for slot, pool in pools.items()}
    for second, first in PAIRED.items():
        while values[second] == values[first]:
            values[second] = rng.choice(pools[second])
    return values


def moved(triples: list[Triple], position: int, by: int) -> list[Triple]:
    """The triples with every entity at or after ``position`` moved ``by`` characters."""

    def entity(found: Entity) -> Entity:
        return found if found.start < position else Entity(found.text, found.start + by, found.end + by, found.type)

    return [Triple(entity(triple.subject), triple.predicate, entity(triple.object)) for triple in triples]


def with_noise(example: Example, rng: random.Random) -> Example:
    """One mark at the start, at the end or beside a name (before or after it), set apart by a space."""
    mark = rng.choice(NOISE)
    names = [entity for triple in example.triples for entity in (triple.subject, triple.object)]
    where = rng.choice(["start", "end", "name"] if names else ["start", "end"])
    name = rng.choice(names) if where == "name" else None
    if where == "start" or (name and rng.random() < 0.5):
        position, piece = (name.start if name else 0), f"{mark} "
    else:
        position, piece = (name.end if name else len(example.text)), f" {mark}"
    text = example.text[:position] + piece + example.text[position:]
    return Example(text, moved(example.triples, position, len(piece)))


def several_people(
    rng: random.Random,
    pools: dict[str, list[str]],
    forms: list,
    negatives: float,
    fillers: float = 0.0,
    composed: float = 0.0,
) -> Example:
    """Two or three parts, a space between them, each a form with names of its own (no name is in two
    parts); some parts negative, never the first drawn; half of such texts carry a noise mark. A
    ``fillers`` share of the parts carry a filler word (``with_filler``)."""
    parts, used = [], set()
    for index in range(rng.choice([2, 3])):
        form, triples = drawn_form(rng, forms, bool(index) and rng.random() < negatives, fillers, composed)
        slots = re.findall(r"\{(\w+)\}", form)
        values = distinct_values(rng, pools)
        while used & {values[slot] for slot in slots}:
            values = distinct_values(rng, pools)
        used |= {values[slot] for slot in slots}
        parts.append(labelled(form, triples, values, TYPES))
    rng.shuffle(parts)
    text, triples = parts[0].text, parts[0].triples
    for part in parts[1:]:
        triples = triples + moved(part.triples, 0, len(text) + 1)
        text = f"{text} {part.text}"
    return with_noise(Example(text, triples), rng) if rng.random() < 0.5 else Example(text, triples)


def drawn_form(rng: random.Random, forms: list, negative: bool, fillers: float, composed: float) -> Form:
    """A negative form, or one of ``forms`` (a ``composed_form`` for a ``composed`` share of the draws);
    with a filler word for a ``fillers`` share of them."""
    if negative:
        form, triples = rng.choice(NEGATIVE_FORMS), []
    else:
        form, triples = composed_form(rng) if composed and rng.random() < composed else rng.choice(forms)
    if fillers and rng.random() < fillers:
        form = with_filler(form, rng)
    return form, triples


def with_filler(form: str, rng: random.Random) -> str:
    """The form with a filler word at one of its spaces, with a comma after it now and then."""
    spaces = [index for index, char in enumerate(form) if char == " "]
    if not spaces:
        return form
    at = rng.choice(spaces)
    filler = rng.choice(FILLERS) + ("," if rng.random() < 0.3 else "")
    return f"{form[:at]} {filler}{form[at:]}"


def demo_sentences(
    count: int,
    seed: int,
    held_out: bool = False,
    negatives: float = 0.3,
    several: float = 0.0,
    forms: list[Form] | None = None,
    several_forms: list[Form] | None = None,
) -> list[Example]:
    """``count`` labelled texts; a ``negatives`` share of them state no relation (training only); a
    ``several`` share tell of two or three people (``several_people``). ``forms`` and ``several_forms``
    (forms of two people) replace the training or held-out ones."""
    rng = random.Random(seed)
    pools = name_pools(held_out)
    forms = forms or (HELD_OUT_FORMS if held_out else TRAIN_FORMS)
    several_forms = forms + (several_forms or (HELD_OUT_SEVERAL_FORMS if held_out else SEVERAL_FORMS))
    fillers, composed = (0.0, 0.0) if held_out else (FILLER_SHARE, COMPOSED_SHARE)
    examples = []
    for _ in range(count):
        if several and rng.random() < several:
            share = negatives if not held_out else 0.25
            examples.append(several_people(rng, pools, several_forms, share, fillers, composed))
            continue
        values = distinct_values(rng, pools)
        form, triples = drawn_form(rng, forms, not held_out and rng.random() < negatives, fillers, composed)
        examples.append(labelled(form, triples, values, TYPES))
    return examples
