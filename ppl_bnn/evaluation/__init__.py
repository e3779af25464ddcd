"""Evaluation.

Metrics, predictions, Bayesian model averages, comparison with a reference,
posterior surfaces, domain shift.
"""
