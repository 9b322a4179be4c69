"""Rendering of pictures: terminal heatmaps, histograms and line plots, and PNG files."""
