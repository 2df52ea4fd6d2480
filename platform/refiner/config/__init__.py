"""What a run is asked to do: the config dataclasses (sections), their strict loader, recipes, and the experiment (config + tasks) a job prepares."""
