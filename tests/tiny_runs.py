"""The ``--set`` overrides that make a run tiny, defined once for the tests and benchmarks.

A tiny run takes seconds on a 2-core machine while still exercising every part of the
loop: augmentation, several unrolled steps, validation, checkpoints. A test that needs
something else says so by appending overrides (later ones win): ``[*TINY, "training.x=1"]``.
No imports, so benchmarks can use it too.
"""

# The network: 16 wide, one layer of two heads.
TINY_MODEL = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1"]

# A whole training run on jobs/configs/parity.yaml: parity, the tiny model, a short unroll.
# (The first three entries pick the task; tests that bring their own task skip them.)
TINY = [
    "task.source=parity",
    "task.count=256",
    "task.size=8",
    "task.val_max_rows=64",
    *TINY_MODEL,
    "model.attention_window=null",
    "orchestration.max_steps_train=4",
    "orchestration.max_steps_infer=2",
    "orchestration.backprop_truncate_steps=4",
    "orchestration.augmentation_count=8",
    "training.batch_size=16",
    "training.warmup_steps=2",
    "training.report_every=5",
    "training.checkpoint_every=10",
    "training.shuffle_buffer_rows=64",
    "training.cpus_per_worker=0.5",
]

# A sweep trial on jobs/configs/sweep.yaml (which already picks parity, one worker with half
# a CPU and a short unroll): the tiny model and a few dozen updates.
TINY_SWEEP = [
    *TINY_MODEL,
    "orchestration.augmentation_count=4",
    "training.batch_size=16",
    "training.report_every=10",
    "training.checkpoint_every=10",
    "training.warmup_steps=2",
]
