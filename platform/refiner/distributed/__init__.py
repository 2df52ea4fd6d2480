"""The Ray layer: the only package that imports Ray (tests/test_layers.py checks it).

``cluster``: starting or attaching to Ray. ``data``: Ray Data streams of augmented rows.
``loop``: the per-worker train loop. ``trainer``: the driver side of a training run
(TorchTrainer). Sweeps on Ray Tune: ``sweep_driver`` (the Tuner, the best trial),
``trial`` (one trial = one training run), ``sweep_progress`` (the per-trial progress
line, closing trial runs), ``search`` (a search space as Tune domains, ASHA/FIFO).
``compat``: every private Ray API the platform uses, each with why.

The pure parts of sweeps (the space format, the plan, the outcome, checkpoint reading)
are core, in ``refiner.sweep``; the MLflow side is ``refiner.tracking``.
"""
