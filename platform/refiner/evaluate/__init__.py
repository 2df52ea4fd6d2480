"""Held-out evaluation as the field reports it: refinement curves, exact match and ARC voting, plots and canvas pictures."""
