"""Honest evaluation: the paper's PGD protocol beside adaptive attacks, over Ray."""
