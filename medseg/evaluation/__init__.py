"""Evaluation: per-case, per-label metrics (MATLAB's names), the report ``medseg evaluate`` writes, and cross-validation."""
