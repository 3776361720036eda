"""The OpenAPI document tells the truth (``deployments.openapi``): one error body, the
error statuses each operation can answer, by the rules, and no FastAPI error schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from deployments import openapi
from deployments.ingress import routed_app
from raymall.catalog.listing import Page
from raymall.errors import error_body

ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def app() -> Any:
    return routed_app()


@pytest.fixture(scope="module")
def doc(app: Any) -> dict[str, Any]:
    return app.openapi()  # type: ignore[no-any-return]


def ops(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    ]


def errors_of(op: dict[str, Any]) -> set[int]:
    return {int(s) for s in op["responses"] if int(s) >= 400}


def validator(doc: dict[str, Any]) -> jsonschema.Validator:
    schema = {**doc["components"]["schemas"]["Error"], "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_no_fastapi_error_schema_is_left(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    for name in ("HTTPValidationError", "ValidationError"):
        assert f"#/components/schemas/{name}" not in text
        assert name not in doc["components"]["schemas"]


def test_every_error_response_is_the_one_error_body(doc: dict[str, Any]) -> None:
    for method, path, op in ops(doc):
        for status in errors_of(op):
            content = op["responses"][str(status)]["content"]
            assert content == {"application/json": {"schema": ERROR_REF}}, (method, path, status)


def test_every_operation_documents_503(doc: dict[str, Any]) -> None:
    assert all(503 in errors_of(op) for _, _, op in ops(doc))


def test_422_only_when_the_operation_has_inputs(doc: dict[str, Any]) -> None:
    for method, path, op in ops(doc):
        has_inputs = bool(op.get("parameters") or op.get("requestBody"))
        assert (422 in errors_of(op)) == has_inputs, (method, path)


def test_a_json_body_can_be_refused_with_400(doc: dict[str, Any]) -> None:
    for method, path, op in ops(doc):
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            assert 400 in errors_of(op), (method, path)


def test_authenticated_operations_document_401_403_and_the_bearer_scheme(
    doc: dict[str, Any],
) -> None:
    assert doc["components"]["securitySchemes"][openapi.BEARER]["scheme"] == "bearer"
    private = 0
    for method, path, op in ops(doc):
        if openapi.is_public(method, path):
            assert "security" not in op, (method, path)
            extra = openapi.EXTRA_STATUSES.get((method, path), set())
            assert 401 not in errors_of(op) or 401 in extra, (method, path)
        else:
            private += 1
            assert {401, 403} <= errors_of(op), (method, path)
            assert op["security"] == [{openapi.BEARER: []}], (method, path)
    assert private > 40


def test_path_parameters_mean_404(doc: dict[str, Any]) -> None:
    for method, path, op in ops(doc):
        if "{" in path:
            assert 404 in errors_of(op), (method, path)


def test_the_public_allow_list_is_what_the_document_shows(doc: dict[str, Any]) -> None:
    assert "security" not in doc["paths"]["/products"]["get"]
    assert doc["paths"]["/admin/products"]["post"]["security"]
    assert 401 not in errors_of(doc["paths"]["/products/{product_id}"]["get"])


def test_extra_rows_name_real_operations(doc: dict[str, Any]) -> None:
    shown = {(method, path) for method, path, _ in ops(doc)}
    for key in (*openapi.EXTRA_STATUSES, *openapi.RAW_BODIES, *openapi.SUCCESS_CONTENT):
        assert key in shown, key


def test_raw_body_routes_document_their_body_and_its_limits(doc: dict[str, Any]) -> None:
    upload = doc["paths"]["/admin/media/images"]["post"]
    assert "image/png" in upload["requestBody"]["content"]
    assert {413, 415, 422} <= errors_of(upload)
    callback = doc["paths"]["/payments/callback"]["post"]
    assert "application/json" in callback["requestBody"]["content"]
    assert {400, 401, 413} <= errors_of(callback)


def test_success_bodies_fastapi_cannot_see_are_documented(doc: dict[str, Any]) -> None:
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    image = doc["paths"]["/media/images/{name}"]["get"]["responses"]["200"]["content"]
    assert "image/png" in image and "application/json" not in image
    listing = doc["paths"]["/products"]["get"]["responses"]["200"]["content"]
    assert "next_cursor" in listing["application/json"]["schema"]["required"]
    detail = doc["paths"]["/products/{product_id}"]["get"]["responses"]["200"]["content"]
    assert detail == {"application/json": {"schema": {"type": "object"}}}


def test_documented_pages_and_lists_accept_what_the_code_renders(doc: dict[str, Any]) -> None:
    def schema(method: str, path: str) -> jsonschema.Validator:
        ok = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        return jsonschema.Draft202012Validator(ok["schema"])

    page = Page(items=[{"id": 1}], total=1, page=None, size=20, next_cursor="abc").to_dict()
    for path in ("/products", "/products/search", "/admin/products"):
        schema("get", path).validate(page)
    schema("get", "/orders").validate({"items": [], "next_cursor": "12"})
    schema("get", "/admin/flash-sales").validate({"items": [], "next_cursor": 7})
    schema("get", "/categories").validate({"items": [{"id": 1, "children": []}]})
    with pytest.raises(jsonschema.ValidationError):
        schema("get", "/products").validate({"items": []})


def test_the_error_model_accepts_every_rendered_error_and_nothing_else(
    doc: dict[str, Any],
) -> None:
    check = validator(doc)
    check.validate(error_body("rid", "not_found", "no such product"))
    check.validate(error_body("rid", "conflict", "taken", {"field": "slug"}))
    for wrong in ({"detail": [{"loc": ["query", "page"]}]}, {"error": {"code": "x"}}):
        with pytest.raises(jsonschema.ValidationError):
            check.validate(wrong)


def test_a_real_validation_error_matches_the_documented_422(app: Any, doc: dict[str, Any]) -> None:
    resp = TestClient(app).get("/products", params={"page": 0})
    assert resp.status_code == 422
    assert 422 in errors_of(doc["paths"]["/products"]["get"])
    validator(doc).validate(resp.json())
    assert resp.json()["error"]["details"]["errors"][0]["loc"] == ["query", "page"]


def test_a_body_too_deep_to_parse_is_the_documented_400(app: Any, doc: dict[str, Any]) -> None:
    resp = TestClient(app).post(
        "/auth/login", content=b"[" * 15_000, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert 400 in errors_of(doc["paths"]["/auth/login"]["post"])
    validator(doc).validate(resp.json())


def test_the_document_is_built_once(app: Any) -> None:
    assert app.openapi() is app.openapi()
