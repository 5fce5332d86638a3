"""Metrics under upstream Dassl's names."""

from .accuracy import compute_accuracy

__all__ = ["compute_accuracy"]
