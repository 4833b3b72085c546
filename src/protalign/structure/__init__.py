"""structure step of the pipeline."""
