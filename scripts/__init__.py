"""Scripts run from a checkout; a package too, so that `scripts.gpt` imports from the repository root."""
