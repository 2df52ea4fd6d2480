"""Built-in task sources. Each module exposes
``generate(count: int, size: int, seed: int, **options) -> pyarrow.Table`` in TASK_SCHEMA."""
