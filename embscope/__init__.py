"""embscope: look inside the input embeddings (wte, wpe) of language models.

    import embscope
    m = embscope.load("gpt2")          # same specs as the CLI's -m; no torch, memory-mapped
    m.neighbors("king", k=10)

The API is imported on first use, so `embscope --help` stays fast.
"""

__version__ = "0.1.0"

__all__ = [
    "load", "Model", "EmbscopeError",
    "Neighbors", "Neighbor", "KnnBlock", "PositionSimilarity", "Norms", "Embedding", "Stats",
    "Selection", "Map", "Export", "Glitch", "GlitchCandidates",
    "diff", "drift", "run_steps", "Diff", "Drift", "PositionDrift",
]

_WHERE = {
    "load": "embscope.api", "Model": "embscope.api", "EmbscopeError": "embscope.errors",
    "Neighbors": "embscope.results", "Neighbor": "embscope.results", "KnnBlock": "embscope.results",
    "PositionSimilarity": "embscope.results", "Norms": "embscope.results", "Embedding": "embscope.results",
    "Stats": "embscope.analysis.norms",
    "Selection": "embscope.results", "Map": "embscope.results", "Export": "embscope.results",
    "Glitch": "embscope.results", "GlitchCandidates": "embscope.results",
    "diff": "embscope.api", "drift": "embscope.api", "run_steps": "embscope.api",
    "Diff": "embscope.results", "Drift": "embscope.results", "PositionDrift": "embscope.results",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'embscope' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
