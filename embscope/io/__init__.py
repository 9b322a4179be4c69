"""Readers for checkpoint formats. Each returns lazily read matrices; nothing here prints."""
