"""Running many runs: the runner (skip, resume, train, record; with seeds on demand, the rounds the
design asks for), recording a finished run, claims shared by concurrent runners, resuming after
a crash, preflight checks, the console, K processes per device and Ray. May import: every layer
below (base … report)."""
