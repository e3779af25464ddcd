"""ppl_bnn."""
