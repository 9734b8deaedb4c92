"""The report: the comparisons of the variants read back from the store, the markdown and its
sections (statistics, effects, seeds on demand), and every figure. Reads the store through
harness.tracking only. May import: every layer below (base … tracking)."""
