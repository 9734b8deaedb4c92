"""Passwords in addresses (harness/base/credentials.py): masked wherever text is printed or stored,
sent to an MLflow server as HTTP basic authentication, never as part of its host name. The end-to-end
search of the console, the store, the artifacts and the reports for a password is
tests/running/test_team.py::test_a_password_in_the_addresses_is_nowhere_in_the_console_the_store_the_artifacts_or_the_reports."""

from __future__ import annotations

import http.server
import threading

import pytest

from harness.base.credentials import mask, without_userinfo
from harness.base.errors import UsageError
from harness.tracking import addresses


@pytest.mark.parametrize(
    "text, shown",
    [
        ("postgresql://user:s3cr%40t@db.lab:5432/mlflow", "postgresql://user:***@db.lab:5432/mlflow"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg2://u:***@h/db"),
        (
            "run --tracking-uri http://me:pw@127.0.0.1:5000 --seeds 3",
            "run --tracking-uri http://me:***@127.0.0.1:5000 --seeds 3",
        ),
        ("error: 'mysql://a:b/c@h/d' and 'https://x:y@z'", "error: 'mysql://a:***@h/d' and 'https://x:***@z'"),
        (
            "postgresql://user@host/db and sqlite:///mlflow.db and a@b.c",
            "postgresql://user@host/db and sqlite:///mlflow.db and a@b.c",
        ),
    ],
)
def test_a_password_in_any_address_of_a_text_is_masked_and_nothing_else_changes(text, shown):
    assert mask(text) == shown
    assert str(UsageError(text)) == shown  # every refusal the harness prints or raises


def test_an_address_without_its_userinfo_keeps_host_port_and_path():
    assert without_userinfo("http://me:p%40ss@127.0.0.1:5000/mlflow") == (
        "http://127.0.0.1:5000/mlflow",
        "me",
        "p%40ss",
    )
    assert without_userinfo("http://[::1]:5000") == ("http://[::1]:5000", None, None)


def test_credentials_in_an_http_tracking_address_reach_a_live_server_as_basic_authentication():
    seen: list[str] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        addresses.check_server(
            f"http://me:p%40ss@127.0.0.1:{port}"
        )  # reached: the userinfo is sent as basic auth, not put into the host
        assert seen == ["Basic bWU6cEBzcw=="]  # me:p@ss
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(UsageError) as refused:
        addresses.check_server(f"http://me:p%40ss@127.0.0.1:{port}")
    assert "p%40ss" not in str(refused.value) and f"'http://me:***@127.0.0.1:{port}'" in str(refused.value)
