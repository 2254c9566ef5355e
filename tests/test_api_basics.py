"""HTTP basics: problem+json for every error, request ids, OpenAPI and docs."""
import io
import json
import logging

import pytest
from apiflask import Schema
from apiflask.fields import Integer, String

from app.api.problems import PROBLEM_MEDIA_TYPE
from app.logs import configure_logging


class EchoIn(Schema):
    name = String(required=True)
    count = Integer()


@pytest.fixture
def demo_app(sqlite_app):
    """The embedded app with two routes that exist only for these tests."""

    @sqlite_app.post("/_test/echo")
    @sqlite_app.input(EchoIn)
    def echo(json_data):
        return json_data

    @sqlite_app.get("/_test/boom")
    def boom():
        raise RuntimeError("secret internal detail")

    return sqlite_app


@pytest.fixture
def demo(demo_app):
    return demo_app.test_client()


def assert_problem(response, status, slug):
    assert response.status_code == status
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body = response.get_json(force=True)
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    return body


def test_unknown_url_is_a_404_problem(demo):
    assert_problem(demo.get("/no/such/thing"), 404, "not-found")


def test_wrong_method_is_a_405_problem(demo):
    assert_problem(demo.delete("/healthz"), 405, "method-not-allowed")


def test_malformed_json_is_a_400_problem(demo):
    response = demo.post("/_test/echo", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.mimetype == PROBLEM_MEDIA_TYPE


def test_validation_errors_name_the_field(demo):
    body = assert_problem(demo.post("/_test/echo", json={"count": "x"}), 400, "validation-error")
    fields = {error["field"] for error in body["errors"]}
    assert {"name", "count"} <= fields


def test_unknown_fields_are_refused_by_name(demo):
    body = assert_problem(demo.post("/_test/echo", json={"name": "a", "evil": 1}), 400, "validation-error")
    assert "evil" in {error["field"] for error in body["errors"]}


def test_too_large_body_is_a_413_problem(demo):
    big = json.dumps({"name": "x" * (2 * 1024 * 1024)})
    assert_problem(demo.post("/_test/echo", data=big, content_type="application/json"), 413, "payload-too-large")


def test_unhandled_exception_is_a_500_problem_without_a_trace(demo, caplog):
    with caplog.at_level(logging.ERROR):
        response = demo.get("/_test/boom")
    body = assert_problem(response, 500, "internal-error")
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


def test_every_response_has_a_request_id(demo):
    generated = demo.get("/healthz").headers["X-Request-ID"]
    assert len(generated) >= 16
    assert demo.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    # a header that is not an id is replaced, never echoed
    assert demo.get("/healthz", headers={"X-Request-ID": "<script>"}).headers["X-Request-ID"] != "<script>"


def test_request_id_reaches_the_json_logs(demo_app):
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    demo_app.test_client().get("/healthz", headers={"X-Request-ID": "trace-me-42"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line.get("logger") == "app.http"]
    assert access and access[-1]["request_id"] == "trace-me-42"
    assert access[-1]["status"] == 200


def test_openapi_spec_is_generated_from_the_code(demo):
    spec = demo.get("/openapi.json").get_json()
    assert spec["info"]["title"] == "fairq"
    assert "/readyz" in spec["paths"] and "/healthz" in spec["paths"]
    # each schema once: no "UserOut1"-style duplicates
    assert not [name for name in spec["components"]["schemas"] if name[-1].isdigit()]


def test_docs_page_uses_local_assets(demo):
    page = demo.get("/docs").get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert "cdn." not in page
    with demo.get("/docs/assets/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200 and len(asset.data) > 100_000


def test_healthz_and_readyz_on_the_embedded_default(demo):
    assert demo.get("/healthz").get_json() == {"status": "ok"}
    ready = demo.get("/readyz").get_json()
    assert ready["status"] == "ready"
    assert {c["component"] for c in ready["checks"]} == {
        "SQLite", "in-process broker", "in-memory limits", "local folder"
    }
