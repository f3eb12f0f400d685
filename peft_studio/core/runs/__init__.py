"""Training and its records: the trainer, its thread count, family comparisons and the run store."""
