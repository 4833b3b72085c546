"""analysis step of the pipeline."""
