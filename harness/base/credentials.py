"""Credentials in addresses. A password written into a URL (`postgresql://user:PASSWORD@host/db`,
`http://user:PASSWORD@host`) is masked wherever the harness prints or stores text: the console,
error messages, MLflow tags and params, the logged `config.toml` and the report all show
`postgresql://user:***@host/db`. The unmasked address is used only to connect. Better still, keep
passwords out of addresses: PostgreSQL reads `PGPASSWORD` or `~/.pgpass`, an MLflow server
`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (docs/scaling-out.md)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# scheme://user:password@ (the user holds no ':', '/' or '@'; the password runs to the first '@')
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@\s]*)@")


def mask(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`."""
    return _USERINFO.sub(lambda m: f"{m['head']}:***@", text) if "@" in text else text


def without_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """`url` without its `user:password@`, and the user and password it held (None where absent)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), parts.username, parts.password
