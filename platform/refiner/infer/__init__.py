"""Infer few: per-sample stopping (halting), calibration of the stopping settings, predictions on new inputs and what a served model accepts."""
