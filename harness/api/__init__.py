"""The Python API for notebooks and scripts: `harness.run(...)` and `harness.load(...)`, which run
the same command as the CLI (the same settings, checks and errors) and return a `Study` of
DataFrames and the report. May import: every layer below (it drives the `cli` layer's commands)."""
