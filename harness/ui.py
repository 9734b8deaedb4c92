"""`python -m harness ui`: the MLflow UI on the harness's store."""
from __future__ import annotations

from harness.tracking import artifact_root


def launch_ui(uri: str, host: str, port: int) -> int:
    """Run the MLflow UI on the store until interrupted; returns its exit code."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    root = artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    print(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
