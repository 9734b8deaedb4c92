"""Tuning: Optuna studies over a variant's search space on validation data, with workers on one
machine or many, and their MLflow runs. May import: every layer below (base … running)."""
