"""The Python API for notebooks and scripts: `harness.run(...)` and `harness.load(...)`, which call
the library functions the CLI calls (the same settings, checks and errors) and return a `Study` of
DataFrames and the report. May import: every layer below (never the `cli` layer, which sits above it)."""
