"""Which requests the precondition layer checks itself (the ones fake-gcs-server does not)."""

import pytest

from ampbq.tools.gcs_rules import compose_destination, generation_target, guarded_object, holds, listing_bucket

MATCH = {"ifGenerationMatch": ["7"]}


@pytest.mark.parametrize("method, path, expected", [
    ("POST", "/storage/v1/b/bkt/o/import%2F2024-01-31%2F05.json/compose", ("bkt", "import/2024-01-31/05.json")),
    ("DELETE", "/storage/v1/b/bkt/o/rejects%2Fx.json", ("bkt", "rejects/x.json")),
    ("PATCH", "/storage/v1/b/bkt/o/a", ("bkt", "a")),
    ("POST", "/storage/v1/b/src/o/a/rewriteTo/b/dst/o/b%2Fc", ("dst", "b/c")),
    ("POST", "/storage/v1/b/src/o/a/copyTo/b/dst/o/d", ("dst", "d")),
    ("GET", "/storage/v1/b/bkt/o/a", None),  # reads change nothing
    ("POST", "/upload/storage/v1/b/bkt/o", None),  # uploads: fake-gcs-server checks them itself
])
def test_guarded_requests(method, path, expected):
    assert guarded_object(method, path, MATCH) == expected


def test_a_request_without_a_precondition_is_not_checked():
    assert guarded_object("DELETE", "/storage/v1/b/bkt/o/a", {}) is None


def test_compose_destination():
    assert compose_destination("POST", "/storage/v1/b/bkt/o/a%2Fb/compose") == ("bkt", "a/b")
    assert compose_destination("POST", "/storage/v1/b/bkt/o/a") is None


@pytest.mark.parametrize("expected, live, result", [("0", 0, True), ("0", 5, False), ("5", 5, True), ("4", 5, False), ("x", 5, False)])
def test_holds(expected, live, result):
    assert holds(expected, live) is result


@pytest.mark.parametrize("path, query, expected", [
    ("/storage/v1/b/bkt/o/export%2Fa.json", {"generation": ["12"]}, ("bkt", "export/a.json", 12)),
    ("/download/storage/v1/b/bkt/o/a", {"generation": ["3"], "alt": ["media"]}, ("bkt", "a", 3)),
    ("/storage/v1/b/bkt/o/a", {}, None),  # the live object: fake-gcs-server serves it right
    ("/storage/v1/b/bkt/o", {"generation": ["3"]}, None),  # a listing
    ("/storage/v1/b/bkt/o/a/compose", {"generation": ["3"]}, None),
    ("/storage/v1/b/bkt/o/a", {"generation": ["x"]}, None),
])
def test_generation_target(path, query, expected):
    assert generation_target(path, query) == expected


def test_listing_bucket():
    assert listing_bucket("GET", "/storage/v1/b/bkt/o") == "bkt"
    assert listing_bucket("GET", "/storage/v1/b/bkt/o/a") is None
    assert listing_bucket("POST", "/storage/v1/b/bkt/o") is None
