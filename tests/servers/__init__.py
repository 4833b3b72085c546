"""Local stand-ins for external services (RCSB, ...), started by pytest fixtures; no test touches the network."""
