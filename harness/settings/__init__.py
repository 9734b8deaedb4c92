"""Settings: the experiment file and `--set`, every value checked, designs (list, factorial,
leave-one-out) expanded into variants, the analysis and seeds-on-demand settings, tuning search
spaces, and one resolved `RunSpec` per (variant, seed) with its run key. May import: base,
data, training, variants."""
