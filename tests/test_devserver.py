"""The local stack as `make run` serves it, driven over real HTTP like the frontend would."""

from __future__ import annotations

import requests

from lib.discovery import function_names, url_path


def test_account_journey_over_http(live_server):
    s = requests.Session()
    email, password = "journey@example.com", "a very long secret"
    r = s.post(f"{live_server}/auth-signup", json={"email": email, "password": password, "name": "Journey"}, timeout=10)
    assert r.status_code == 201, r.text
    r = s.post(f"{live_server}/auth-login", json={"email": email, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert r.headers["Cache-Control"] == "no-store"
    r = s.get(f"{live_server}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10)
    assert r.status_code == 200 and r.json()["user"]["email"] == email
    r = s.post(f"{live_server}/auth-refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=10)
    assert r.status_code == 200
    fresh = r.json()
    r = s.post(f"{live_server}/auth-logout", json={"refresh_token": fresh["refresh_token"]}, timeout=10)
    assert r.status_code == 204
    r = s.post(f"{live_server}/auth-refresh", json={"refresh_token": fresh["refresh_token"]}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_REFRESH_TOKEN"


def test_every_function_is_mounted_and_unknown_paths_are_404(live_server):
    for name in function_names():
        r = requests.options(f"{live_server}{url_path(name)}", timeout=10)
        assert r.status_code != 404, name
    r = requests.get(f"{live_server}/no-such-function", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


def test_cors_preflight_over_http(live_server):
    r = requests.options(
        f"{live_server}/auth-login",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}, timeout=10,
    )
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


def _chunked(body: bytes, size: int):
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_chunked_bodies_without_content_length_are_bounded_not_cut(live_server):
    """Transfer-Encoding: chunked carries no Content-Length: over the limit is a 413 (not a truncated body
    that then reads as broken JSON), and a small chunked body is read whole."""
    import json

    big = json.dumps({"email": "big@example.com", "password": "a long secret", "name": "n", "pad": "x" * 200_000})
    r = requests.post(f"{live_server}/auth-signup", data=_chunked(big.encode(), 4096),
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    small = json.dumps({"email": "chunked@example.com", "password": "a long secret", "name": "Chunky"})
    r = requests.post(f"{live_server}/auth-signup", data=_chunked(small.encode(), 10),
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 201 and r.json()["user"]["name"] == "Chunky"


def test_a_repeated_query_parameter_keeps_its_first_value(live_server):
    r = requests.get(f"{live_server}/products-search?limit=1&limit=oops", timeout=10)
    assert r.status_code == 200 and len(r.json()["products"]) <= 1
