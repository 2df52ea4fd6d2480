"""Independent implementations the tests (and bench/) compare the package against.

Not part of the package: nothing in training imports them.
"""
