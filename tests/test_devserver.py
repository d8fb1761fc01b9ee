"""The local stack as `make run` serves it, driven over real HTTP like the frontend would."""

from __future__ import annotations

import requests

from scripts.devserver import function_names, url_path


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
