"""embscope: look inside the input embeddings (wte, wpe) of language models."""

__version__ = "0.1.0"
