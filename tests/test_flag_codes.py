"""The flag codes are one enum: every code a rule emits exists in it with its severities and its
explanation, the JSON Schema's code list comes from it, and a flag outside its code's
severities cannot be made; the typed results' schema is generated from their fields."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, fields
from pathlib import Path

import jsonschema
import pytest

from advcal import report_schema
from advcal.analyses.audit import audit
from advcal.data import load_data
from advcal.models import load_model
from advcal.report.html import render_html
from advcal.results.conditions import AttackedCondition
from advcal.results.flags import SEVERITIES, UNKNOWN_EXPLANATION, Flag, FlagCode, Severity, explanation
from advcal.results.schema import object_schema

SRC = Path(__file__).resolve().parents[1] / "src" / "advcal"


@pytest.fixture(scope="module")
def report() -> dict:
    """A small audit that raises flags of several codes (digits-cnn is broken at ε = 0.2)."""
    found = audit({"digits-cnn": load_model("digits-cnn")}, load_data("digits", limit=120), [0.2],
                  attack_params={"steps": 3}, bootstrap=0)
    return found.to_dict()


def test_every_code_has_severities_and_an_explanation():
    for code in FlagCode:
        assert code.value == code.name
        assert code.severities and all(isinstance(s, Severity) for s in code.severities)
        assert len(code.explanation) > 40 and code.explanation.endswith(".")


def test_no_code_is_written_as_a_bare_string_outside_the_enum():
    """Rules name codes through FlagCode, so a typo fails at import, not in a user's report."""
    bare = re.compile(r'"(' + "|".join(code.value for code in FlagCode) + r')"')
    home = SRC / "results" / "flags.py"
    found = [f"{path.relative_to(SRC)}:{n}" for path in SRC.rglob("*.py") if path != home
             for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if bare.search(line)]
    assert found == []


def test_a_flag_outside_its_codes_severities_is_refused():
    with pytest.raises(ValueError, match="CHANCE_ACCURACY: severity 'info' is not one of error"):
        Flag(FlagCode.CHANCE_ACCURACY, Severity.INFO, "m")
    with pytest.raises(ValueError):
        Flag("NO_SUCH_CODE", "info", "m")  # type: ignore[arg-type]
    as_read = Flag("ECE_DELTA", "info", "m").as_dict()  # type: ignore[arg-type]
    assert as_read == {"code": "ECE_DELTA", "severity": "info", "message": "m", "eps": None, "evidence": {}}
    assert type(as_read["code"]) is str and f"{FlagCode.ECE_DELTA} {Severity.ERROR}" == "ECE_DELTA error"


def test_the_schema_lists_exactly_the_enum_and_refuses_another_code(report):
    schema = report_schema()
    properties = schema["$defs"]["flag"]["properties"]
    assert properties["code"]["enum"] == [code.value for code in FlagCode]
    assert properties["severity"]["enum"] == list(SEVERITIES)
    jsonschema.validate(report, schema)
    tampered = copy.deepcopy(report)
    next(m for m in tampered["models"] if m["flags"])["flags"][0]["code"] = "ECE_DELTAS"
    with pytest.raises(jsonschema.ValidationError, match="ECE_DELTAS"):
        jsonschema.validate(tampered, schema)


def test_the_typed_results_schema_is_generated_from_their_fields(report):
    # Each typed entry of report.json is described by its type's fields: the properties are
    # exactly what to_dict writes, and a field with no schema cannot be published.
    schema = report_schema()
    model = next(m for m in report["models"] if m["flags"])
    written = {"condition": model["clean"], "attack": model["attacks"][0], "flag": model["flags"][0],
               "verdict": model["verdict"]}
    for name, entry in written.items():
        assert set(schema["$defs"][name]["properties"]) >= set(entry), name
        assert set(schema["$defs"][name]["required"]) <= set(entry), name
    assert set(schema["$defs"]["attack"]["properties"]) == {f.name for f in fields(AttackedCondition)}
    assert "paired" not in schema["$defs"]["attack"]["required"]  # absent without a bootstrap

    @dataclass
    class Undescribed:
        """A result with a field nobody described."""

        figure: float

    with pytest.raises(TypeError, match="Undescribed: fields without a schema: figure"):
        object_schema(Undescribed)
    for tamper in (lambda m: m["attacks"][0].pop("abstention"), lambda m: m["flags"][0].update(extra=1),
                   lambda m: m["verdict"].update(level="maybe")):
        tampered = copy.deepcopy(report)
        tamper(next(m for m in tampered["models"] if m["flags"]))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(tampered, schema)


def test_the_page_explains_each_code_from_the_enum_and_a_foreign_code_calmly(report):
    codes = {f["code"] for m in report["models"] for f in m["flags"]}
    assert len(codes) >= 2
    page = render_html(report)
    for code in codes:
        assert explanation(code) == FlagCode(code).explanation
        assert FlagCode(code).explanation.replace("'", "&#39;") in page
    assert explanation("FROM_A_NEWER_ADVCAL") == UNKNOWN_EXPLANATION


def test_the_docs_table_names_every_code_with_its_severities():
    text = (SRC.parents[1] / "docs" / "report.md").read_text("utf-8")
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([a-z /]+) \|", text, flags=re.MULTILINE))
    assert sorted(rows) == sorted(code.value for code in FlagCode)
    for code, severities in rows.items():
        assert {s.strip() for s in severities.split("/")} <= set(FlagCode(code).severities), code
