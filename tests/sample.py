"""A generator of labelled sample sentences in English and Chinese, written for this project.

It backs the tests: a model must overfit them. Sentences come from templates
over name lists, so every entity's character span is known by construction; several templates put
one subject into two triples, or one entity in the subject and object role of different triples.
"""

from __future__ import annotations

import random

from triplex.training.data import Example
from triplex.training.demo_data import RELATIONS, TRAIN_FORMS, labelled

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

TYPES = {relation.predicate: relation for relation in RELATIONS}

# The demo's first eight English forms and four of its Chinese ones ({slot} placeholders, each with its
# triples): a small fixed set that the tests' tiny models overfit.
ZH_FIRST = next(index for index, (form, _) in enumerate(TRAIN_FORMS) if form.startswith("{zp}出生于{zc}，"))
TEMPLATES = TRAIN_FORMS[:8] + TRAIN_FORMS[ZH_FIRST : ZH_FIRST + 4]
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
