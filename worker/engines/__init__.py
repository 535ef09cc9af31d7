"""Engines generate continuations of token prompts; see base.Engine."""
