"""Evaluation engine: metrics, membership inference, robustness metrics, reports and tracking."""
