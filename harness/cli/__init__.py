"""The command line, on top of the library: the flags, one function per command (`run`, `tune`,
`bench`, `report`, `export`, `plan`, `promote`, `list`, `ui`) that parses them and calls the
library (`run`: harness/running/experiment.py), the benchmark and the MLflow UI. May import: every
layer below, the Python API included; nothing below imports it."""
