"""The daemon's local HTTP API: bearer token required, health and status, a clean shutdown."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import pytest

from .test_e2e_replication import Daemon, free_port

pytestmark = pytest.mark.timeout(120)


def call(base: str, path: str, token: str | None, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(base + path, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_api_needs_the_token_and_reports_health_and_status(node_cli):
    node_cli.ok("collection", "create", "Reports", "--tier", "public")
    daemon = Daemon(node_cli, free_port())
    try:
        assert daemon.info["http"].startswith("127.0.0.1:")
        base = f"http://{daemon.info['http']}/api/v1"
        token = (node_cli.home / "http.token").read_text().strip()
        assert oct((node_cli.home / "http.token").stat().st_mode & 0o777) == "0o600"
        for bad in (None, "", "wrong", token + "x"):
            code, body = call(base, "/status", bad)
            assert code == 401 and "token" in body["error"]
        code, health = call(base, "/health", token)
        assert code == 200 and health["status"] == "ok"
        assert health["peer_id"] == node_cli.ok("id", "--json").json()["peer_id"]
        code, status = call(base, "/status", token)
        assert code == 200
        assert [c["tier"] for c in status["collections"]] == ["public"]
        code, body = call(base, "/sync?peer=12D3KooWnotapeer", token, "POST")
        assert code == 404
        assert call(base, "/nothing-here", token)[0] == 404
        # a second daemon on the same home is refused
        r = node_cli("run", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}", "--no-mdns")
        assert r.code == 1 and "already running" in r.err
    finally:
        daemon.proc.send_signal(signal.SIGINT)
        assert daemon.proc.wait(timeout=15) == 0
    assert not (node_cli.home / "run" / "daemon.json").exists()


def test_sync_without_peers_is_a_clear_error(node_cli):
    r = node_cli("sync")
    assert r.code == 1 and "no peers" in r.err
