"""ppl_bnn: Bayesian neural network posteriors."""
