"""The best trial's run config as a YAML file that ``jobs/train.py --config`` reads."""

from __future__ import annotations

from pathlib import Path

from refiner.config.experiment import ExperimentConfig, load_experiment_config

_HEADER = (
    "# The best trial's run config, exported by jobs/sweep.py.\n"
    "# Train it longer: python jobs/train.py --config {path} --set training.steps=N\n"
)


def export_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write ``config`` (atomically) and read it back with the training loader."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config.to_dict()
    text = _HEADER.format(path=path) + ExperimentConfig.from_dict(data).to_yaml()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    load_experiment_config(path)  # what train.py does with it; raises ConfigError if not
    return path
