"""The ground floor: the error a user sees (`UsageError`), fault injection for tests
(`HARNESS_FAULT`), and atomic file writes. Imports nothing of the harness."""
