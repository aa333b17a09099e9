"""Reproducible studies built on the library: runs, analysis, figures, report."""
