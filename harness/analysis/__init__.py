"""Statistics, pure functions of numbers: paired tests and intervals, Holm, TOST, Hedges' g_z,
the two-level bootstrap, factorial effects, seeds needed, and the seeds-on-demand rule that
decides which pairs the next round needs. May import: base, data, training, variants, settings."""
