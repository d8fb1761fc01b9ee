"""The OpenAPI document: valid, complete (every HTTP function and method), served with caching."""

from __future__ import annotations

import ast
from pathlib import Path

from openapi_spec_validator import validate

from tests.api_document import api_document

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def _http_methods() -> dict[str, set[str]]:
    """function name -> methods from its @http_function(methods=[...]) decorator, read without importing it."""
    found = {}
    for main in FUNCTIONS.glob("*/main.py"):
        for node in ast.walk(ast.parse(main.read_text())):
            if not isinstance(node, ast.FunctionDef) or node.name != main.parent.name:
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "http_function":
                    methods = next(k.value for k in decorator.keywords if k.arg == "methods")
                    names = methods.keys if isinstance(methods, ast.Dict) else methods.elts
                    found[main.parent.name] = {elt.value for elt in names}
    return found


def test_document_is_valid_openapi_3_1():
    validate(api_document())


def test_every_http_function_and_method_is_documented_and_nothing_else():
    declared = _http_methods()
    doc = api_document()
    documented = {path.lstrip("/").replace("-", "_"): {method.upper() for method in ops}
                  for path, ops in doc["paths"].items()}
    assert declared, "no HTTP functions found"
    assert documented == declared


def test_request_schemas_come_from_the_validating_models():
    doc = api_document()
    signup = doc["paths"]["/auth-signup"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = doc["components"]["schemas"][signup["$ref"].rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"email", "password", "name"}
    assert schema["properties"]["password"]["minLength"] == 8
    search = {p["name"] for p in doc["paths"]["/products-search"]["get"]["parameters"]}
    assert {"label", "max_width_cm", "cursor", "limit"} <= search
    key = next(p for p in doc["paths"]["/interiors-generate"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header" and key["schema"]["maxLength"] == 128
    assert doc["paths"]["/me"]["get"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/auth-login"]["post"]["security"] == []


def test_served_with_etag(fn):
    client = fn("openapi")
    r = client.get("/")
    assert r.status_code == 200 and r.get_json()["openapi"] == "3.1.0"
    assert client.get("/", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    assert client.post("/", json={}).status_code == 405


def test_deleting_the_account_documents_its_current_password_body():
    doc = api_document()
    delete = doc["paths"]["/me"]["delete"]
    ref = delete["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["current_password"] and set(schema["properties"]) == {"current_password"}
    assert {"400", "403", "429"} <= set(delete["responses"]) and "429" in doc["paths"]["/me"]["patch"]["responses"]


def test_documented_reasons_are_the_codes_the_code_uses():
    import re
    from pathlib import Path
    from typing import get_args

    from lib import generation, interiors, providers, uploads

    lib = Path(__file__).resolve().parent.parent / "lib"
    rejections = set(re.findall(r'ImageRejected\(\s*"([a-z_]+)"', "".join(p.read_text() for p in lib.rglob("*.py"))))
    assert set(get_args(uploads.RejectionReason)) == rejections | {"not_received"}
    failures = {v for k, v in vars(providers).items() if k.isupper() and isinstance(v, str)}
    failures |= {interiors.ATTEMPTS_EXHAUSTED, generation.GENERATION_FAILED, interiors.ENQUEUE_FAILED}
    assert set(get_args(interiors.FailureReason)) == failures


def test_caching_outages_and_retry_after_are_documented(fn):
    doc = fn("openapi").get("/").get_json()
    catalog = doc["paths"]["/products-search"]["get"]
    assert set(catalog["responses"]["304"]["headers"]) == {"ETag", "Cache-Control"}
    assert "If-None-Match" in [p["name"] for p in catalog["parameters"]]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert ("503" in operation["responses"]) == (path != "/openapi"), (path, method)
            for status in ("429", "503"):
                if status in operation["responses"]:
                    assert "Retry-After" in operation["responses"][status]["headers"], (path, method, status)
    # and what the running function does matches: a matching If-None-Match is a 304
    first = fn("styles_list").get("/")
    again = fn("styles_list").get("/", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and "304" in doc["paths"]["/styles-list"]["get"]["responses"]


def _schemas_in(node):
    """Every schema object in a document fragment (walking properties, items, unions...)."""
    if isinstance(node, dict):
        if "type" in node or "$ref" in node or "anyOf" in node or "oneOf" in node:
            yield node
        for value in node.values():
            yield from _schemas_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas_in(value)


def test_what_typed_clients_need_is_declared():
    doc = api_document()
    assert doc["servers"] and doc["tags"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation["tags"], (path, method)
            public = operation["security"] == []
            assert public or operation["security"] == [{"bearer": []}], (path, method)
            assert public == ("401" not in operation["responses"] or path in ("/auth-login", "/auth-refresh"))
    for schema in _schemas_in(doc):  # every object says what it holds, every array what its items are
        if schema.get("type") == "object" or "object" in (schema.get("type") or []):
            assert "properties" in schema or "additionalProperties" in schema, schema
        if schema.get("type") == "array":
            assert "items" in schema, schema
    for name, schema in doc["components"]["schemas"].items():  # a default would make the field required
        assert not any("default" in prop for prop in schema.get("properties", {}).values()), name
    generate = doc["paths"]["/interiors-generate"]["post"]["responses"]
    assert "Idempotent-Replayed" in generate["202"]["headers"] and "Retry-After" in generate["429"]["headers"]
    assert "ETag" in doc["paths"]["/styles-list"]["get"]["responses"]["200"]["headers"]
    login = doc["paths"]["/auth-login"]["post"]
    form = login["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][form]["required"]) == {"username", "password"}
    assert "access token" not in login["responses"]["401"]["description"]
    assert "access token" not in doc["paths"]["/auth-refresh"]["post"]["responses"]["401"]["description"]
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"field", "message", "type"}
    read = doc["components"]["schemas"]["ReadBody"]["oneOf"]
    assert [option["required"] for option in read] == [["ids"], ["all"]]


def test_units_and_meaning_are_documented():
    schemas = api_document()["components"]["schemas"]
    assert "pixels" in schemas["Box"]["description"]
    assert all("cm" in prop["description"] for prop in schemas["Dimensions"]["properties"].values())
    assert "cosine" in schemas["Product"]["properties"]["score"]["description"]
    assert "0..1" in schemas["DetectedPart"]["properties"]["confidence"]["description"]
    ar = schemas["ArObject"]["properties"]
    assert "meters" in ar["position"]["description"] and "degrees" in ar["rotation"]["description"]
    assert "multiply" in ar["scale"]["description"] and "cm" in ar["width"]["description"]


def test_answers_are_the_declared_models():
    """A builder cannot add a field its model does not declare (the model is the answer's shape)."""
    import pytest
    from pydantic import ValidationError

    from lib import catalog

    with pytest.raises(ValidationError):
        catalog.RoomType(id="kitchen", name="Kitchen", secret="x")
