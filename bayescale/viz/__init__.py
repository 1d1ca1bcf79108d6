"""Figures and reports: matplotlib figures of fits and forecasts, and self-contained HTML or Markdown
reports.
"""
