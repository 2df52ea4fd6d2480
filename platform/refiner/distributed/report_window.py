"""Training statistics a worker accumulates between two reports, and their means."""

from __future__ import annotations

from dataclasses import dataclass, field

from refiner.train.fit import Update


@dataclass
class ReportWindow:
    """Training statistics accumulated between two reports (on one worker)."""

    updates: int = 0
    rows: int = 0
    wait_s: float = 0.0
    compute_s: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    acc_at: list[float] = field(default_factory=list)
    clipped: int = 0
    skipped: int = 0

    def add(self, update: Update) -> None:
        m = update.metrics
        self.updates += 1
        self.rows += update.rows
        self.wait_s += update.wait_s
        self.compute_s += update.compute_s
        averaged = {
            "loss": m.loss,
            "loss_token": m.loss_token,
            "loss_halting": m.loss_halting,
            "loss_quality": m.loss_quality,
            "grad_norm": m.grad_norm,
        }
        for key, value in averaged.items():
            if value is not None:
                self.sums[key] = self.sums.get(key, 0.0) + value
        if not self.acc_at:
            self.acc_at = [0.0] * len(m.acc_at)
        self.acc_at = [a + b for a, b in zip(self.acc_at, m.acc_at, strict=True)]
        self.clipped += int(m.clipped)
        self.skipped += int(m.skipped)

    def metrics(self, world_size: int) -> dict[str, float]:
        """The window's means, as the flat mapping the tracker and Ray Train take."""
        n = max(1, self.updates)
        out = {key: value / n for key, value in self.sums.items()}
        out.update({f"acc_at_{t}": a / n for t, a in enumerate(self.acc_at, start=1)})
        elapsed = self.wait_s + self.compute_s
        out["samples_per_s"] = self.rows * world_size / elapsed if elapsed else 0.0
        out["data_wait_frac"] = self.wait_s / elapsed if elapsed else 0.0
        out["clipped_frac"] = self.clipped / n
        out["skipped_updates"] = float(self.skipped)
        return out
