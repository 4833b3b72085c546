"""align step of the pipeline."""
