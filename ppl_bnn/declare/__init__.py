"""Declaring what is inferred.

Priors, likelihoods, the BNN model, and the problem (model + data + log density).
"""
