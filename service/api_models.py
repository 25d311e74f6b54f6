"""The API contract (pydantic models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..model.tokenize import lone_surrogate


def exactly_one_of_text_or_texts(schema: dict) -> None:
    """The schema as the server reads a request: ``text`` (a string) or ``texts`` (a list of strings),
    exactly one of them, neither of them null."""
    properties = schema["properties"]
    for name in ("text", "texts"):
        allowed = [part for part in properties[name].pop("anyOf") if part.get("type") != "null"]
        properties[name] |= allowed[0]
        properties[name].pop("default", None)
    schema["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]
    schema["examples"] = [{"text": "Ada Lovelace was born in London."}]


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of_text_or_texts)

    text: str | None = Field(None, description="one text")
    texts: list[str] | None = Field(None, min_length=1, description="several texts, answered in order")

    @field_validator("text", "texts")
    @classmethod
    def no_lone_surrogates(cls, value: str | list[str] | None) -> str | list[str] | None:
        # JSON may escape half of a UTF-16 pair ("\ud800"); such a string is not text and cannot be tokenized
        for text in [value] if isinstance(value, str) else value or []:
            problem = lone_surrogate(text)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def one_of_text_or_texts(self) -> ExtractRequest:
        if len(self.model_fields_set & {"text", "texts"}) != 1 or (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" (a string) or "texts" (a list of strings)')
        return self

    @property
    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class EntityOut(BaseModel):
    text: str
    start: int = Field(description="character offset in the submitted text")
    end: int = Field(description="end offset, exclusive: text[start:end] is the entity")
    type: str


class TripleOut(BaseModel):
    subject: EntityOut
    predicate: str
    object: EntityOut
    score: float
    qualifiers: dict[str, EntityOut] | None = Field(None, description="extra slots of a complex object (DuIE 2.0)")


class TextResult(BaseModel):
    triples: list[TripleOut]
    windows: int = Field(
        description="windows the text was cut into; above 1 for texts longer than the model's max length"
    )


class ExtractResponse(BaseModel):
    results: list[TextResult]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class RelationOut(BaseModel):
    predicate: str
    subject_type: str
    object_type: str
    slot: str


class SchemaResponse(BaseModel):
    predicates: list[str]
    entity_types: list[str]
    relations: list[RelationOut]
    examples: list[str] = Field(description="sentences from the model's dev data, to try it with")


class ModelResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str = Field(description="the triplex version serving it")
    precision: str
    provider: str
    max_length: int
    window_stride: int
    fusions: dict[str, int]
    thresholds: dict[str, float] = Field(
        description="start and end pointer thresholds; subject_start and subject_end when subjects have their own"
    )
    export: dict | None = Field(description="how it was exported: precision, parity against PyTorch")
    training: dict = Field(
        description="how it was trained: encoder, data files with sha256, settings, dev metrics per epoch"
    )
