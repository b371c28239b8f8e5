"""JSON Schema from the result types: each field of a typed result carries the schema of its
value (``described``), and :func:`object_schema` turns the dataclass into the schema of the
object its ``to_dict`` writes, so a field added to a type is in report.json's schema at once
(and a field without a schema fails the schema's construction, not a user's validation)."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any


def described(schema: dict[str, Any], *, optional: bool = False) -> dict[str, Any]:
    """The ``metadata`` of a dataclass field whose value ``schema`` describes; ``optional``
    fields may be absent from the object (``to_dict`` leaves them out when unset)."""
    return {"schema": schema, "optional": optional}


def object_schema(kind: type, closed: bool = False) -> dict[str, Any]:
    """The schema of the object ``kind(...).to_dict()`` writes: described by the first paragraph
    of the type's docstring, a property per field, every field required unless optional;
    ``closed`` refuses properties the type does not have."""
    every = fields(kind)
    missing = [field.name for field in every if "schema" not in field.metadata]
    if missing:
        raise TypeError(f"{kind.__name__}: fields without a schema: {', '.join(missing)}")
    paragraph = inspect.getdoc(kind).split("\n\n")[0]
    schema: dict[str, Any] = {"type": "object", "description": " ".join(paragraph.replace("``", "").split())}
    schema["required"] = [field.name for field in every if not field.metadata["optional"]]
    if closed:
        schema["additionalProperties"] = False
    schema["properties"] = {field.name: field.metadata["schema"] for field in every}
    return schema
