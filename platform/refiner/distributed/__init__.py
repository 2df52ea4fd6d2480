"""The distributed layer: the only package that imports Ray.

``data``: Ray Data streams of augmented rows. ``loop``: the per-worker train loop.
``trainer``: the driver side (TorchTrainer). ``tune``: sweeps.
"""
