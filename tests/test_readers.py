import json
from pathlib import Path

import pytest

from triplex.training.data import DataError, check_schema, derive_schema, read_dataset, read_schema


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def lines(*items: dict) -> str:
    return "\n".join(json.dumps(item, ensure_ascii=False) for item in items) + "\n"


def spans(example) -> set[tuple]:
    return {
        (t.subject.text, t.subject.start, t.predicate, t.object.text, t.object.start, t.qualifiers)
        for t in example.triples
    }


def test_duie1_with_repeated_and_missing_entities(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "duie1.json",
        lines(
            {
                "text": "《步步惊心》作者桐华，桐华的小说",
                "postag": [],
                "spo_list": [
                    {
                        "subject": "步步惊心",
                        "predicate": "作者",
                        "object": "桐华",
                        "subject_type": "图书作品",
                        "object_type": "人物",
                    },
                    {
                        "subject": "不存在",
                        "predicate": "作者",
                        "object": "桐华",
                        "subject_type": "图书作品",
                        "object_type": "人物",
                    },
                ],
            }
        ),
    )
    examples, raw, format, summary = read_dataset(path)
    assert format == "duie1"
    # the object occurs twice: both occurrences are labelled; the missing subject drops its triple
    assert spans(examples[0]) == {("步步惊心", 1, "作者", "桐华", 8, ()), ("步步惊心", 1, "作者", "桐华", 11, ())}
    assert summary.counts["repeated_entity"] == 2  # counted once per triple that uses it
    assert summary.counts["not_found"] == 1
    assert examples[0].triples[0].object.type == "人物"
    schema = write(
        tmp_path, "all_50_schemas", lines({"subject_type": "图书作品", "predicate": "作者", "object_type": "人物"})
    )
    relations = read_schema(schema)
    assert [r.label for r in relations] == ["作者"]
    check_schema(relations, examples, path)


def test_duie2_complex_object_becomes_slots(tmp_path: Path) -> None:
    record = {
        "text": "周星驰在《大话西游》中为至尊宝配音",
        "spo_list": [
            {
                "predicate": "配音",
                "subject": "周星驰",
                "subject_type": "娱乐人物",
                "object": {"@value": "至尊宝", "inWork": "大话西游"},
                "object_type": {"@value": "人物", "inWork": "影视作品"},
            }
        ],
    }
    path = write(tmp_path, "duie2.json", lines(record))
    examples, raw, format, _ = read_dataset(path)
    assert format == "duie2"
    triple = examples[0].triples[0]
    assert (triple.subject.text, triple.predicate, triple.object.text) == ("周星驰", "配音", "至尊宝")
    assert [(slot, e.text, e.start) for slot, e in triple.qualifiers] == [("inWork", "大话西游", 5)]
    schema = write(
        tmp_path,
        "duie_schema.json",
        lines(
            {"object_type": {"inWork": "影视作品", "@value": "人物"}, "predicate": "配音", "subject_type": "娱乐人物"}
        ),
    )
    assert sorted(r.label for r in read_schema(schema)) == ["配音", "配音|inWork"]
    assert sorted(r.label for r in derive_schema(raw)) == ["配音", "配音|inWork"]


def test_casrel_list_and_rel2id(tmp_path: Path) -> None:
    data = [{"text": "Alan Bean was born in Wheeler , Texas .", "triple_list": [["Bean", "birthPlace", "Texas"]]}]
    path = write(tmp_path, "train.json", json.dumps(data))
    examples, _, format, _ = read_dataset(path)
    assert format == "casrel"
    assert spans(examples[0]) == {("Bean", 5, "birthPlace", "Texas", 32, ())}
    rel2id = write(tmp_path, "rel2id.json", json.dumps([{"0": "birthPlace"}, {"birthPlace": 0}]))
    assert [r.label for r in read_schema(rel2id)] == ["birthPlace"]
    # WebNLG's exact-match copy holds the relation -> id table alone, in id order or not
    (tmp_path / "only").mkdir()
    only = write(tmp_path, "only/rel2id.json", json.dumps([{"locatedIn": 1, "birthPlace": 0}]))
    assert [r.label for r in read_schema(only)] == ["birthPlace", "locatedIn"]


def test_whole_words_only_and_case_fallback(tmp_path: Path) -> None:
    data = [{"text": "Beans and bean: Bean .", "triple_list": [["Bean", "r", "BEANS"]]}]
    examples, _, _, summary = read_dataset(write(tmp_path, "d.json", json.dumps(data)))
    # "Bean" is not matched inside "Beans"; "BEANS" is found only ignoring case
    assert spans(examples[0]) == {("Bean", 16, "r", "Beans", 0, ())}
    assert summary.counts["case_mismatch"] == 1


def test_conll04_bilou(tmp_path: Path) -> None:
    data = [
        {
            "tokens": ["John", "Smith", "works", "for", "Acme", "Corp", "in", "Paris", "."],
            "tags": ["B-Peop", "L-Peop", "O", "O", "B-Org", "L-Org", "O", "U-Loc", "O"],
            "relations": [{"head": 0, "tail": 1, "type": "Work_For"}, {"head": 1, "tail": 2, "type": "OrgBased_In"}],
        }
    ]
    examples, raw, format, _ = read_dataset(write(tmp_path, "c.json", json.dumps(data)))
    assert format == "conll04"
    text = examples[0].text
    for triple in examples[0].triples:
        assert text[triple.subject.start : triple.subject.end] == triple.subject.text
    assert spans(examples[0]) == {
        ("John Smith", 0, "Work_For", "Acme Corp", 21, ()),
        ("Acme Corp", 21, "OrgBased_In", "Paris", 34, ()),
    }
    assert {(r.predicate, r.subject_type, r.object_type) for r in derive_schema(raw)} == {
        ("Work_For", "Peop", "Org"),
        ("OrgBased_In", "Org", "Loc"),
    }
    types = write(
        tmp_path, "conll04_types.json", json.dumps({"entities": {}, "relations": {"Work_For": {}, "Kill": {}}})
    )
    assert [r.label for r in read_schema(types)] == ["Work_For", "Kill"]


def test_plain_jsonl_offsets_and_strings(tmp_path: Path) -> None:
    text = "Ada Lovelace was born in London; London is in England."
    record = {
        "text": text,
        "triples": [
            {
                "subject": {"text": "Ada Lovelace", "start": 0, "end": 12, "type": "person"},
                "predicate": "born_in",
                "object": {"text": "London", "start": 25, "end": 31},
            },
            {"subject": "London", "predicate": "located_in", "object": "England"},
        ],
    }
    examples, _, format, _ = read_dataset(write(tmp_path, "d.jsonl", lines(record)))
    assert format == "jsonl"
    got = spans(examples[0])
    assert ("Ada Lovelace", 0, "born_in", "London", 25, ()) in got  # offsets given: taken as they are
    assert {("London", 25, "located_in", "England", 46, ()), ("London", 33, "located_in", "England", 46, ())} <= got
    assert examples[0].triples[0].subject.type == "person"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a", "spo_list": []}\n{"text": "b", "spo_list": [}\n', "d.json:2: not valid JSON"),
        ('{"text": "a", "triples": [{"subject": "a", "object": "b"}]}\n', "d.json:1: missing 'predicate'"),
        (
            '{"text": "abc", "triples": [{"subject": {"text": "ab", "start": 1}, "predicate": "p", "object": "c"}]}\n',
            r"is not text\[1:3\]",
        ),
        ('[{"text": "a", "triple_list": [["a", "b"]]}]', "item 0: a triple must be"),
        ('{"sentence": "a"}\n', "cannot tell the format"),
        ("\n\n", "holds no sentences"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_dataset(write(tmp_path, "d.json", content))


def test_schema_mismatch_and_unknown_format(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", json.dumps([{"text": "a b", "triple_list": [["a", "likes", "b"]]}]))
    examples, *_ = read_dataset(path)
    schema = write(tmp_path, "rel2id.json", json.dumps([{"0": "hates"}, {"hates": 0}]))
    with pytest.raises(DataError, match="predicates not in the schema \\('likes'\\)"):
        check_schema(read_schema(schema), examples, path)
    with pytest.raises(DataError, match="unknown format"):
        read_dataset(path, "xml")
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "missing.json")


# "Alice Moreau of Kestrel Foods met Bob in Osaka.": "Kestrel Foods" and "Kestrel" overlap, "Bob" has no relation
ANNOTATED = "Alice Moreau of Kestrel Foods met Bob in Osaka."
EXPECTED = {
    ("Alice Moreau", 0, "works_for", "Kestrel Foods", 16, ()),
    ("Kestrel Foods", 16, "employs", "Alice Moreau", 0, ()),  # the same pair in the other direction
    ("Kestrel", 16, "located_in", "Osaka", 41, ()),  # starts where the overlapping company starts
}


def test_doccano_relation_jsonl(tmp_path: Path) -> None:
    record = {
        "id": 7,
        "text": ANNOTATED,
        "entities": [
            {"id": 1, "label": "person", "start_offset": 0, "end_offset": 12},
            {"id": 2, "label": "company", "start_offset": 16, "end_offset": 29},
            {"id": 3, "label": "brand", "start_offset": 16, "end_offset": 23},
            {"id": 4, "label": "person", "start_offset": 34, "end_offset": 37},
            {"id": 5, "label": "city", "start_offset": 41, "end_offset": 46},
        ],
        "relations": [
            {"id": 10, "from_id": 1, "to_id": 2, "type": "works_for"},
            {"id": 11, "from_id": 2, "to_id": 1, "type": "employs"},
            {"id": 12, "from_id": 3, "to_id": 5, "type": "located_in"},
        ],
    }
    unlabelled = {"id": 8, "text": "Nothing here.", "entities": [], "relations": []}
    examples, raw, format, _ = read_dataset(write(tmp_path, "doccano.jsonl", lines(record, unlabelled)))
    assert format == "doccano" and spans(examples[0]) == EXPECTED and examples[1].triples == []
    types = {(r.predicate, r.subject_type, r.object_type) for r in derive_schema(raw)}
    assert ("located_in", "brand", "city") in types and ("employs", "company", "person") in types
    broken = dict(record, relations=[{"id": 1, "from_id": 1, "to_id": 99, "type": "x"}])
    with pytest.raises(DataError, match="entity id that is not there"):
        read_dataset(write(tmp_path, "broken.jsonl", lines(broken)))


def label_studio_task(results: list[dict]) -> dict:
    return {"id": 3, "data": {"text": ANNOTATED}, "annotations": [{"id": 1, "result": results, "was_cancelled": False}]}


def region(region_id: str, start: int, end: int, label: str) -> dict:
    value = {"start": start, "end": end, "text": ANNOTATED[start:end], "labels": [label]}
    return {"id": region_id, "from_name": "label", "to_name": "text", "type": "labels", "value": value}


def test_label_studio_relation_export(tmp_path: Path) -> None:
    results = [
        region("a", 0, 12, "person"),
        region("k", 16, 29, "company"),
        region("b", 16, 23, "brand"),
        region("p", 34, 37, "person"),  # no relation
        region("o", 41, 46, "city"),
        {"from_id": "a", "to_id": "k", "type": "relation", "direction": "right", "labels": ["works_for"]},
        {"from_id": "a", "to_id": "k", "type": "relation", "direction": "left", "labels": ["employs"]},
        {"from_id": "b", "to_id": "o", "type": "relation", "direction": "right", "labels": ["located_in"]},
        {"from_id": "p", "to_id": "o", "type": "relation", "direction": "right", "labels": []},  # says nothing
    ]
    path = write(tmp_path, "project.json", json.dumps([label_studio_task(results)]))
    examples, _, format, _ = read_dataset(path)
    assert format == "labelstudio" and spans(examples[0]) == EXPECTED
    both = results[:5] + [{"from_id": "a", "to_id": "p", "type": "relation", "direction": "bi", "labels": ["knows"]}]
    examples, *_ = read_dataset(write(tmp_path, "bi.json", json.dumps([label_studio_task(both)])))
    assert {(t.subject.text, t.object.text) for t in examples[0].triples} == {
        ("Alice Moreau", "Bob"),
        ("Bob", "Alice Moreau"),
    }


def test_conll04_types_file_keeps_the_entity_types(tmp_path: Path) -> None:
    from triplex.training.data import with_types_from

    types = write(tmp_path, "conll04_types.json", json.dumps({"entities": {"Peop": {}}, "relations": {"Work_For": {}}}))
    sentence = {"tokens": ["Ann", "works", "for", "Acme"], "tags": ["U-Peop", "O", "O", "U-Org"],
                "relations": [{"type": "Work_For", "head": 0, "tail": 1}]}  # fmt: skip
    _, raw, _, _ = read_dataset(write(tmp_path, "conll04_train.json", json.dumps([sentence])))
    relations = with_types_from(read_schema(types), derive_schema(raw))
    assert [(r.predicate, r.subject_type, r.object_type) for r in relations] == [("Work_For", "Peop", "Org")]
