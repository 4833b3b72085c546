"""Use the aligned space after a run: embed your own structures, search proteins by text, describe a structure.

Nothing here trains or re-implements a model: parsing is `prepare`'s, encoders are the trained GDM checkpoints and
LLMs of the run, and the projections are the pair's trained heads (`models/heads/<llm>__<gdm>.pt`).
"""
