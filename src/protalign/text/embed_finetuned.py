"""embed_text_finetuned stage: embed the summaries with base + LoRA adapter, as `embeddings/text/<llm>+lora/`.

A separate stage (not an `embed_text` item) because it also depends on `models/adapters/<llm>/`; the embedding
itself is `embed_text`'s, unchanged, with the merged model passed in.
"""

from __future__ import annotations

from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import EmbeddingSet
from protalign.text import embed, llms
from protalign.text.lora.adapters import load_with_adapter


def run(params: Params, paths: Paths, llm: str) -> EmbeddingSet:
    """`llm` is the BASE name (`smollm2-135m`); the output is named `<llm>+lora`."""
    loaded = load_with_adapter(paths, llm, device=params.embed_text.device)
    llms.register(loaded.spec)  # `<llm>+lora` = the base's spec under the adapter name (idempotent)
    return embed.run(params, paths, loaded.spec.name, loaded=loaded)
