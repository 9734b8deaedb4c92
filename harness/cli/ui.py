"""`python -m harness ui`: the MLflow UI on the harness's store."""
from __future__ import annotations

import ipaddress
import socket
import sys

from harness.base.errors import UsageError
from harness.tracking.store import artifact_root


def check_address(host: str, port: int) -> None:
    """The port must be free on `host` (else one line naming it, exit 2); a host other than
    loopback gets a warning: the MLflow server has no authentication."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port: {port} is not allowed; expected 1 to 65535")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise UsageError(f"--port: cannot listen on {host}:{port} ({e.strerror or e}); choose another port or host") from None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(f"warning: --host {host}: the MLflow UI has no authentication; anyone who can reach this machine on port {port} "
              "can read and change the store", file=sys.stderr, flush=True)


def launch_ui(uri: str, host: str, port: int) -> int:
    """Run the MLflow UI on the store until interrupted; returns its exit code."""
    import subprocess

    check_address(host, port)

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    root = artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    print(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
