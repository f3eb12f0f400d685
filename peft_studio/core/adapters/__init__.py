"""One frozen base, many adapters: the adapter set, LoRA merging and combination."""
