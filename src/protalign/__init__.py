"""protalign: measure how well LLM text embeddings and geometric structure embeddings of proteins align."""

__version__ = "0.1.0"
