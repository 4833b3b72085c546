"""corpus step of the pipeline."""
