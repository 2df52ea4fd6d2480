"""The pure parts of hyperparameter sweeps (no Ray, no MLflow).

``space``: search spaces (``tune_spaces/*.yaml``) parsed and validated; ``settings``: the
``sweep:`` section (searcher, scheduler, objectives); ``combinations``: every combination a
space can draw built into a config, and one trial's config. ``plan``: a
sweep's plan (space, base config, storage; written for ``--resume``) and the resources
a trial takes. ``outcome``: the trials, the best one, the summary table. ``export``: the
best trial's config as a YAML for ``jobs/train.py --config``. ``checkpoints``: reading a
saved checkpoint and running infer-few on it (``jobs/evaluate.py``).

Running a sweep on Ray Tune is in the Ray layer (``refiner.distributed.sweep_driver``);
its MLflow side (parent/child runs, registry, reading a sweep back for
``jobs/compare.py``) is in ``refiner.tracking.sweeps`` and ``refiner.tracking.compare``.
"""
