"""Hyperparameter sweeps: search spaces (``tune_spaces/*.yaml``), the Tune trainable,
MLflow parent/child runs, the best trial's config export and model registration.

``space`` and ``export`` are pure Python; ``tune_space``, ``trainable`` and
``callbacks`` import Ray; ``runs`` is the sweep's MLflow side.
"""
