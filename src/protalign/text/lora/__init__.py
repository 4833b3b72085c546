"""LoRA fine-tuning of the text LLMs, one job per module; the `finetune` stage itself is `protalign.text.finetune`.

prompts (examples from the split, prompt formats, tokenisation) → loading (causal LM, optional 4-bit) →
batching (padding, the LM loss, batch plans) → training (the LoRA loop) → adapters (names, saving, loading back).
"""
