"""Hyperparameter sweeps: search spaces (``tune_spaces/*.yaml``), the Tune trainable,
MLflow parent/child runs, the best trial's config export and model registration.

``space`` and ``export`` are pure Python; ``tune_space``, ``trainable``, ``callbacks``
and ``driver`` import Ray. The MLflow side (parent/child runs, registry, reading a sweep
back for ``jobs/compare.py``) is in the tracking layer, ``refiner.tracking.sweeps`` and
``refiner.tracking.compare``; the job hands it to ``driver.run_sweep``.
"""
