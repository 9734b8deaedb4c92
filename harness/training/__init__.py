"""Training one run: the engine (the tutorial's loop made fast, with its settings
`TrainSettings` and `Runtime`), exact-resume checkpoints, the test-set evaluation and what a
finished run produces. May import: base, data (the engine itself imports only torch)."""
