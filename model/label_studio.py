"""Label Studio's side of the labelling loop: a relation project's labelling config, triples as its
predictions (one ``labels`` region per entity, one ``relation`` result per triple), and the score that
orders its tasks so that the model's least certain texts come first.

Offsets are code points, as everywhere in triplex and as Label Studio stores them for ``Text``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from .extractor import Extractor
from .schema import Relation, Thresholds, Triple

# Candidates for the score: pointers below the kept thresholds (0.4-0.6 as a rule), so that a triple the model
# nearly found counts as a doubt as much as one it found with little margin. Not much lower: a barely trained
# model then lists millions (100 WebNLG* texts: 3.3 M candidate triples at 0.1, 372,217 at 0.2, 1,238 at 0.3).
CANDIDATE_THRESHOLDS = Thresholds(start=0.3, end=0.3)


class LabelConfigError(ValueError):
    """A labelling config this model cannot predict for; the message lists what is missing or unknown."""


@dataclass(frozen=True)
class LabelConfig:
    """What triplex reads of a project's labelling config: the ``Text`` tag (its name and the task field it
    shows), the ``Labels`` tag that marks entities, and the ``Relation`` values."""

    text_name: str
    text_field: str
    labels_name: str
    labels: tuple[str, ...]
    relations: tuple[str, ...]

    @classmethod
    def parse(cls, xml: str) -> LabelConfig:
        try:
            root = ElementTree.fromstring(xml)
        except ElementTree.ParseError as error:
            raise LabelConfigError(f"the labelling config is not XML: {error}") from None
        texts = root.findall(".//Text")
        if len(texts) != 1 or not texts[0].get("value", "").startswith("$"):
            raise LabelConfigError('the labelling config needs one <Text name="..." value="$field"> tag')
        text = texts[0]
        labels = [tag for tag in root.findall(".//Labels") if tag.get("toName") == text.get("name")]
        if len(labels) != 1:
            raise LabelConfigError(f'the labelling config needs one <Labels> tag with toName="{text.get("name")}"')
        return cls(
            text_name=text.get("name", ""),
            text_field=text.get("value", "")[1:],
            labels_name=labels[0].get("name", ""),
            labels=tuple(tag.get("value", "") for tag in labels[0].findall("Label")),
            relations=tuple(tag.get("value", "") for tag in root.findall(".//Relations/Relation")),
        )

    @classmethod
    def for_model(cls, xml: str, relations: list[Relation]) -> LabelConfig:
        """The config, or LabelConfigError with every label and relation the model does not know."""
        config = cls.parse(xml)
        refusal = config.refusal(relations)
        if refusal:
            raise LabelConfigError(refusal)
        return config

    def label_of(self, entity_type: str) -> str:
        """The ``Labels`` value of an entity type; an untyped model's entities take a config's only label."""
        return self.labels[0] if not entity_type and len(self.labels) == 1 else entity_type

    def refusal(self, relations: list[Relation]) -> str | None:
        """Why this model cannot serve the config (each unknown label and relation listed), or None."""
        predicates = sorted({relation.predicate for relation in relations})
        types = entity_types(relations)
        problems = []
        unknown_relations = sorted(set(self.relations) - set(predicates))
        if unknown_relations:
            problems.append(f"relations the model does not know: {', '.join(unknown_relations)}")
        if not self.relations:
            problems.append("the config has no <Relations> tag")
        if types:
            unknown_labels = sorted(set(self.labels) - set(types))
            if unknown_labels:
                problems.append(f"labels the model does not know: {', '.join(unknown_labels)}")
        elif len(self.labels) != 1:
            problems.append("the model's entities have no types: give the config exactly one label for them")
        if not problems:
            return None
        knows = f"the model knows relations {', '.join(predicates)}"
        knows += f" and labels {', '.join(types)}" if types else ""
        return "; ".join(problems) + f" ({knows})"


def entity_types(relations: list[Relation]) -> list[str]:
    return sorted({t for relation in relations for t in (relation.subject_type, relation.object_type)} - {""})


def candidates_of(extractor: Extractor) -> Extractor:
    """The same model finding the triples it nearly found as well: what ``confidence`` reads."""
    return extractor.with_thresholds(CANDIDATE_THRESHOLDS)


def label_config_xml(relations: list[Relation]) -> str:
    """A labelling config for a relation project with this model's entity types and predicates."""
    types = entity_types(relations)
    predicates = sorted({relation.predicate for relation in relations})
    lines = ["<View>", "  <Relations>"]
    lines += [f"    <Relation value={quoteattr(predicate)}/>" for predicate in predicates]
    lines += ["  </Relations>", '  <Labels name="label" toName="text">']
    lines += [f"    <Label value={quoteattr(label)}/>" for label in types or ["entity"]]
    lines += ["  </Labels>", '  <Text name="text" value="$text"/>', "</View>"]
    return "\n".join(lines) + "\n"


def confidence(candidates: list[Triple]) -> float:
    """How sure the model is of a text: 1 − the doubt of its least certain decision, where a candidate
    triple scored s (found with pointers below the kept thresholds) has doubt 1 − |2s − 1|, the
    most at 0.5. A text without candidates is one the model is sure holds nothing (1.0). Sorted from
    low to high, texts come whose labels would move the model most: those with a triple it can
    neither keep nor drop with confidence."""
    return min((abs(2 * triple.score - 1) for triple in candidates), default=1.0)


def results(triples: list[Triple], config: LabelConfig) -> list[dict]:
    """Label Studio's result list: a ``labels`` region per distinct entity, a ``relation`` per triple."""
    regions: dict[tuple[int, int, str], str] = {}
    items: list[dict] = []

    def region(text: str, start: int, end: int, entity_type: str, score: float) -> str:
        label = config.label_of(entity_type)
        key = (start, end, label)
        if key not in regions:
            regions[key] = f"t{len(regions)}"
            value = {"start": start, "end": end, "text": text, "labels": [label]}
            items.append({
                "id": regions[key], "from_name": config.labels_name, "to_name": config.text_name,
                "type": "labels", "value": value, "score": score,
            })  # fmt: skip
        return regions[key]

    relations = []
    for triple in triples:
        subject, obj = triple.subject, triple.object
        from_id = region(subject.text, subject.start, subject.end, subject.type, triple.score)
        to_id = region(obj.text, obj.start, obj.end, obj.type, triple.score)
        relations.append(
            {"from_id": from_id, "to_id": to_id, "type": "relation", "direction": "right", "labels": [triple.predicate]}
        )
    return items + relations


def prediction(triples: list[Triple], candidates: list[Triple], config: LabelConfig, model_version: str) -> dict:
    """One task's prediction as Label Studio stores it."""
    return {"result": results(triples, config), "score": confidence(candidates), "model_version": model_version}
