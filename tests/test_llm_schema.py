"""The model's schemas are generated from skills/: every skill, enum and range, in the strict subset."""

from __future__ import annotations

from typing import Any

import pytest

from medrobot_llm.planning.llm.schema import plan_schema, response_format, skill_tools, submit_plan_tool
from medrobot_llm.core.command_set import DOMAINS, load_command_set


def _objects(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "object" or schema.get("type") == ["object"]:
            found.append(schema)
        for v in schema.values():
            found += _objects(v)
    elif isinstance(schema, list):
        for v in schema:
            found += _objects(v)
    return found


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_skill_enum_and_range_comes_from_the_command_set(domain: str) -> None:
    cs = load_command_set(domain)
    schema = plan_schema(domain)
    variants = {v["properties"]["skill"]["enum"][0]: v for v in schema["properties"]["steps"]["items"]["anyOf"]}
    assert list(variants) == list(cs.skills)
    for name, skill in cs.skills.items():
        props = variants[name]["properties"]["args"]["properties"]
        assert list(props) == list(skill.args)
        for aname, spec in skill.args.items():
            p = props[aname]
            if spec.type == "enum":
                assert p["enum"] == [*cs.allowed_values(spec), None]
            elif spec.type == "number" and not spec.range_from:
                assert (p["minimum"], p["maximum"]) == (spec.min, spec.max)
            elif spec.type == "vector3":
                assert (p["items"]["minimum"], p["items"]["maximum"]) == (spec.min, spec.max)
                assert p["minItems"] == p["maxItems"] == 3
            elif spec.type == "text":
                assert p["maxLength"] == spec.max_length


@pytest.mark.parametrize("domain", DOMAINS)
def test_schemas_fit_strict_structured_outputs(domain: str) -> None:
    for schema in (plan_schema(domain), *[t["function"]["parameters"] for t in skill_tools(domain)]):
        for obj in _objects(schema):
            assert obj.get("additionalProperties") is False
            assert sorted(obj["required"]) == sorted(obj["properties"])
    rf = response_format(domain)
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert submit_plan_tool(domain)["function"]["strict"] is True


def test_range_that_depends_on_another_argument_is_the_union_and_described() -> None:
    schema = plan_schema("xray")
    adjust = next(v for v in schema["properties"]["steps"]["items"]["anyOf"]
                  if v["properties"]["skill"]["enum"] == ["adjust"])
    amount = adjust["properties"]["args"]["properties"]["amount"]
    assert (amount["minimum"], amount["maximum"]) == (-200, 200)
    assert "tilt: -30..30 deg" in amount["description"] and "orbit: -180..180 deg" in amount["description"]


def test_the_model_has_no_say_in_confirmations() -> None:
    for domain in DOMAINS:
        assert "needs_confirmation" not in plan_schema(domain)["properties"]


def test_returned_schemas_are_copies() -> None:
    a = plan_schema("surgery")
    a["properties"].clear()
    assert plan_schema("surgery")["properties"]


def test_exposure_cap_in_schema_follows_max_steps() -> None:
    assert plan_schema("xray", max_steps=7)["properties"]["steps"]["maxItems"] == 7
