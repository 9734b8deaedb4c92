"""`python -m harness ui`: the MLflow UI on the harness's store."""

from __future__ import annotations

import ipaddress
import os
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
        raise UsageError(
            f"--port: cannot listen on {host}:{port} ({e.strerror or e}); choose another port or host"
        ) from None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(
            f"warning: --host {host}: the MLflow UI has no authentication; anyone who can reach this machine on port {port} "
            "can read and change the store",
            file=sys.stderr,
            flush=True,
        )


def launch_ui(uri: str, host: str, port: int) -> int:
    """Run the MLflow UI on the store until interrupted; returns its exit code. The server and
    every worker it starts run in a process group of their own, which Ctrl-C, SIGTERM or SIGHUP to
    this command stops whole (SIGTERM, then SIGKILL after 10 s): no server is left serving the store."""
    import signal
    import subprocess

    from harness.base.errors import Terminated

    check_address(host, port)

    # one worker, and no GenAI job runner: a UI for one user's store, not 15 processes on 2 cores
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    cmd += ["--workers", "1"]
    root = artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    print(f"starting the MLflow UI for {uri} ...", flush=True)
    signal.signal(signal.SIGHUP, signal.getsignal(signal.SIGTERM))  # a closed terminal stops it as SIGTERM does
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    }
    server = subprocess.Popen(cmd, start_new_session=True, env=env)
    try:
        if _answers(server, host, port):  # the address once it answers, not a minute before
            # MLflow 3's UI opens on its GenAI views unless asked for the model-training ones (it then keeps that)
            address = f"http://{host}:{port}/#/experiments?workflowType=machine_learning"
            print(f"MLflow UI for {uri} at {address}  (Ctrl-C to stop)", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return _stop(server, 130)
    except Terminated:
        return _stop(server, 143)


def _answers(server, host: str, port: int) -> bool:
    """Wait until the server answers its health check (True) or exits (False)."""
    import time
    import urllib.request

    where = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("0.0.0.0", "") else host)
    while server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{where}:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.25)
    return False


def _stop(server, code: int) -> int:
    """Stop the server's whole process group; returns `code`."""
    import signal
    import subprocess

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=wait)
            if sig == signal.SIGTERM:
                os.killpg(server.pid, signal.SIGKILL)  # workers that outlived their master
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    return code
