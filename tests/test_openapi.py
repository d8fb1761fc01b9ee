"""The OpenAPI document: valid, complete (every HTTP function and method), served with caching."""

from __future__ import annotations

import ast
from pathlib import Path

from openapi_spec_validator import validate

from lib import openapi

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
    validate(openapi.document(server_url="http://127.0.0.1:8080"))


def test_every_http_function_and_method_is_documented_and_nothing_else():
    declared = _http_methods()
    doc = openapi.document()
    documented = {path.lstrip("/").replace("-", "_"): {method.upper() for method in ops}
                  for path, ops in doc["paths"].items()}
    assert declared, "no HTTP functions found"
    assert documented == declared


def test_request_schemas_come_from_the_validating_models():
    doc = openapi.document()
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
    doc = openapi.document()
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
    failures |= {generation.ATTEMPTS_EXHAUSTED, generation.GENERATION_FAILED, interiors.ENQUEUE_FAILED}
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
