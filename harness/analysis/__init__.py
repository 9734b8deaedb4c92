"""Statistics, pure functions of numbers: paired tests and intervals, Holm, TOST, Hedges' g_z,
the exact sign-flip test, the crossed seeds × images interval, factorial effects, sample sizes, and the
seeds-on-demand rule (with its boundaries, cached per design) that decides which pairs the next
round needs. May import: base, data, training, variants, settings."""
