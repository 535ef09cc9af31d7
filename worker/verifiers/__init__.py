"""Verifiers score every step of every candidate with a number in [0, 1]."""
