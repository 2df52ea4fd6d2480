"""refiner: train and tune iterative refiner models.

The core (this package, minus ``refiner.distributed`` and ``refiner.tracking``) imports
neither Ray nor MLflow, so it runs in a plain Python loop on a laptop.
"""

__version__ = "0.1.0"
