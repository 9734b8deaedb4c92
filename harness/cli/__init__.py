"""The command line: the flags, one function per command (`run`, `tune`, `bench`, `report`, `export`,
`plan`, `promote`, `list`, `ui`), the benchmark and the MLflow UI. May import: every layer below."""
