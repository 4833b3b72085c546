"""text step of the pipeline."""
