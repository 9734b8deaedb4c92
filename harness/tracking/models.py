"""What a seed run holds in MLflow besides numbers: the model of its selected epoch (an MLflow 3
Logged Model named `model`, made by the run and linked to it as its output, so the UI lists it
under the experiment's Models and the run's outputs, and `mlflow.pytorch.load_model("runs:/<id>/model")`
or `models:/<model id>` returns a working network in a fresh process), the data it used as MLflow
dataset inputs, and `promote` (harness/running/stored.py) registers a variant's best seed run in
the Model Registry. Runs logged before Logged Models kept it as the run's `model` artifact; both
load and register the same way.

The model is saved in MLflow's pickle format: its network is the class of the installed
`harness.variants` (LeNet) or of the user's component files, which travel with it as code, so it
loads as the same class wherever `harness` is installed. (Models logged before the components moved
under `harness` carry their own copy of the top-level `variants` package and keep loading from it.) MLflow's safer "pt2" format (torch.export) took 0.45–3 s a
run here against ~0.13 s. Its signature is a float32 batch of N×C×H×W images in [0, 1] (as the
engine feeds them) to class logits, with two test images as the input example.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.tracking.names import MODEL

CONTEXTS = (("train", "training"), ("val", "validation"), ("test", "test"))


def warm_up() -> None:
    """Start, in a background thread, the one slow part of a process's first model save: MLflow's
    map of installed packages (it checks the model's pip requirements against it), ~0.5 s here,
    which then overlaps the first run's training instead of adding to it. The module itself is
    imported here, on the caller's thread: imported on the background thread it raced the main
    thread's own MLflow imports (they import each other), which can expose a half-made module."""
    import threading

    from mlflow.utils import requirements_utils

    init = getattr(requirements_utils, "_init_packages_to_modules_map", None)  # private to MLflow: skipped if it moves
    if init is not None:
        threading.Thread(target=init, name="mlflow-packages-map", daemon=True).start()


def log_model(
    client, run_id: str, experiment_id: str, model: nn.Module, example: torch.Tensor, code: list[str] = ()
) -> str:
    """Save `model` (the selected weights) with a signature and a small input example as the run's
    Logged Model `model` (through the client: no global tracking URI or experiment is set); `code`:
    the files of the user's components it uses, carried as its code. Returns the model's id."""
    import mlflow.pytorch
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import infer_signature

    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its notice about pickle on every save
    net = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    x = example.detach().to("cpu", torch.float32).contiguous().numpy()
    with torch.inference_mode():
        logits = net(torch.from_numpy(x)).numpy()
    logged = client.create_logged_model(experiment_id, name=MODEL, source_run_id=run_id, model_type="pytorch")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / MODEL
            mlflow.pytorch.save_model(
                net,
                str(folder),
                signature=infer_signature(x, logits),
                input_example=x,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                serialization_format="pickle",
                code_paths=list(code) or None,
            )
            client.log_model_artifacts(logged.model_id, str(folder))
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")  # never a READY model without its files
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, 0)])
    return logged.model_id


def digest_of_test_set(x_test: np.ndarray, y_test: np.ndarray) -> str:
    """The test set's own hash (its images as stored and its labels), 16 hex digits."""
    h = hashlib.sha256(np.ascontiguousarray(x_test).tobytes())
    h.update(np.asarray(y_test, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def dataset_inputs(dataset: str, identity: str, split: str, test: str, sizes: dict[str, int]) -> list:
    """The training, validation and test parts as MLflow dataset inputs: digest = the split's
    fingerprint (the test set: its own hash), context training / validation / test."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for part, context in CONTEXTS:
        digest = test if part == "test" else split
        entity = Dataset(
            name=f"{dataset}-{part}",
            digest=digest,
            source_type="local",
            source=json.dumps({"dataset": identity, "part": part}),
            profile=json.dumps({"num_rows": sizes[part]}),
        )
        out.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)]))
    return out


class Registry:
    """The MLflow Model Registry of the store at `uri`, through one client (no global tracking URI:
    a library call must not redirect the caller's MLflow)."""

    def __init__(self, uri: str) -> None:
        from harness.tracking import store

        self.client = store.mlflow_client(uri)

    def model_of(self, run_id: str) -> str:
        """Where the run's model is: `models:/<id>` of its Logged Model, the run's `model` artifact
        for a run logged before Logged Models, '' when it has none (runs from before models were
        logged, or whose code changed while they trained)."""
        run = self.client.get_run(run_id)
        for out in run.outputs.model_outputs if run.outputs else ():
            if self.client.get_logged_model(out.model_id).status == "READY":
                return f"models:/{out.model_id}"
        if self.client.list_artifacts(run_id, MODEL):
            return f"{run.info.artifact_uri}/{MODEL}"
        return ""

    def has_model(self, run_id: str) -> bool:
        return bool(self.model_of(run_id))

    def versions_of(self, run_id: str) -> list[tuple[str, str]]:
        """(registered model, version) of every model version made from the run's model."""
        return sorted((v.name, str(v.version)) for v in self.client.search_model_versions(f"run_id = '{run_id}'"))

    def register(self, run_id: str, name: str, tags: dict[str, str]):
        """The run's model as a new version of the registered model `name` (created on first use), with `tags`."""
        from mlflow.exceptions import MlflowException

        from harness.tracking.store import StoreError, unwritable

        try:
            try:
                self.client.create_registered_model(name)
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = self.model_of(run_id)
            model_id = source.removeprefix("models:/") if source.startswith("models:/") else None
            return self.client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)
        except Exception as e:  # noqa: BLE001 - MLflow wraps the driver's error in its own types
            if unwritable(e):
                raise StoreError(
                    f"the MLflow store cannot be written ({unwritable(e)}); no version was registered"
                ) from None
            raise
