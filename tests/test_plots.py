"""Refinement-curve and halting-histogram plots: real PNG files."""

from __future__ import annotations

from refiner.evaluate.plots import plot_halting_histogram, plot_refinement_curve


def test_plots_write_png(tmp_path):
    png = b"\x89PNG"
    curve = plot_refinement_curve(
        {"train": [0.1, 0.5, 0.9], "val": [0.0, 0.4, 0.8]}, tmp_path / "c.png"
    )
    hist = plot_halting_histogram([1, 2, 2, 3, 16], tmp_path / "sub" / "h.png", max_steps=16)
    assert curve.read_bytes()[:4] == png and hist.read_bytes()[:4] == png
