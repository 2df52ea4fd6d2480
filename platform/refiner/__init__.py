"""refiner: train and tune iterative refiner models.

Layers (tests/test_layers.py keeps them true):

- core: this package minus the two below. Imports neither Ray nor MLflow, so it runs
  in a plain Python loop on a laptop (the model, orchestrator, augmentation, tasks,
  config, checkpoints, the pure parts of sweeps in ``refiner.sweep``, ``refiner.cli``);
- ``refiner.distributed``: the only code that imports Ray (Ray Data, Ray Train, Tune);
- ``refiner.tracking``: the only code that imports MLflow.

The jobs (``jobs/*.py``) parse arguments and call these layers.
"""

__version__ = "0.1.0"
