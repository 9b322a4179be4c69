"""Rendering of pictures: terminal heatmaps, histograms and line plots, and PNG files.

heatmap, histogram, lineplot: one terminal chart each, as Rich Text lines (they never print);
axes: number formatting, ticks and tick-label layout shared by the charts; colors: the colour
modes, viridis and the shade ramp; text: building and cropping lines, escaping user text with
embscope.display.sanitize; png: the same pictures as PNG files (matplotlib).
"""
