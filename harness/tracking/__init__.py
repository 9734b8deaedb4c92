"""The MLflow store: its address and checks, writing runs (one parent per variant, one child per
seed), the names of every tag, metric and artifact, the tags a `run` leaves on its experiment,
models and dataset inputs, provenance, and reading an experiment back as plain records.
Nothing else in the harness imports mlflow. May import: every layer below (base … analysis)."""
