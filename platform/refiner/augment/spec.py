"""``AugmentationSpec``: which strategies, how many rows per task, how strong.

Intensity is a number in [0, 1] per strategy; its meaning is strategy-specific:

| strategy         | intensity means                                              | per row            |
|------------------|--------------------------------------------------------------|--------------------|
| token_noise      | largest fraction of the input's content tokens replaced      | f ~ U(0, max)      |
| position_shift   | largest shift, as a fraction of the length (side for grids); | f ~ U(0, max)      |
|                  | an applied shift moves at least one position                 |                    |
| masking          | largest fraction of the input's content tokens set to MASK   | f ~ U(0, max)      |
| paraphrase       | fraction of the alphabet relabelled (1 = a uniformly random  | f = the set value  |
|                  | relabelling); parity: each input bit flipped with prob. f/2  |                    |
| format_variation | probability that each layout component (dihedral element,    | f = the set value  |
|                  | translation, band/stack/row/column permutations, transpose,  |                    |
|                  | case/whitespace/separator variant) is drawn uniformly from   |                    |
|                  | its group instead of staying the identity                    |                    |

Input-only strategies thus vary in strength from row to row (some rows barely touched),
label-consistent ones are group actions whose randomness is in the element drawn. The
value a row used is recorded in its ``aug_intensity`` column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from refiner.augment.strategies import STRATEGIES

DEFAULT_INTENSITY: Mapping[str, float] = MappingProxyType(
    {
        "token_noise": 0.1,
        "position_shift": 0.1,
        "masking": 0.1,
        "paraphrase": 1.0,
        "format_variation": 1.0,
    }
)


def _default_intensity() -> dict[str, float]:
    return dict(DEFAULT_INTENSITY)


@dataclass(frozen=True)
class AugmentationSpec:
    """What to augment and how; validated on construction (bad values raise ValueError).

    ``count`` rows per task are produced, indices 0..count-1; with ``include_original``
    index 0 is the task itself. ``intensity`` may name a subset of the strategies; the rest
    keep their defaults (``DEFAULT_INTENSITY``). ``dedup`` drops augmented grid rows whose
    (input, target) equal an earlier row of the same task. ``seed_by_group``: row ``i``
    of every task of a ``group_id`` gets the same seed in every epoch, so augmented copy
    ``i`` of a puzzle is one fixed transform of all its pairs (per-augmentation puzzle
    identities, ``refiner.model.puzzles``, need that); otherwise rows are seeded per task and epoch.
    """

    strategies: tuple[str, ...] = STRATEGIES
    count: int = 300
    intensity: Mapping[str, float] = field(default_factory=_default_intensity)
    include_original: bool = True
    dedup: bool = False
    seed_by_group: bool = False

    def __post_init__(self) -> None:
        strategies = self.strategies
        if isinstance(strategies, str):
            raise ValueError(
                f"augmentation strategies must be a sequence of names, got the string {strategies!r}"
            )
        strategies = tuple(strategies)
        for name in strategies:
            if name not in STRATEGIES:
                raise ValueError(
                    f"unknown augmentation strategy {name!r}; choose from {', '.join(STRATEGIES)}"
                )
        if len(set(strategies)) != len(strategies):
            raise ValueError(f"augmentation strategies listed twice: {strategies}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"augmentation count must be an integer >= 1, got {self.count!r}")
        if not isinstance(self.intensity, Mapping):
            raise ValueError(f"augmentation intensity must be a mapping, got {self.intensity!r}")
        intensity = _default_intensity()
        for name, value in self.intensity.items():
            if name not in STRATEGIES:
                raise ValueError(
                    f"unknown strategy {name!r} in augmentation intensity;"
                    f" choose from {', '.join(STRATEGIES)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"augmentation intensity[{name!r}] must be a number, got {value!r}"
                )
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"augmentation intensity[{name!r}] must be in [0, 1], got {value}")
            intensity[name] = float(value)
        for flag in ("include_original", "dedup", "seed_by_group"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"augmentation {flag} must be True or False")
        # Frozen: normalise through object.__setattr__ (a plain dict pickles, a proxy does not).
        object.__setattr__(self, "strategies", strategies)
        object.__setattr__(self, "intensity", intensity)

    def __hash__(self) -> int:
        return hash(
            (
                self.strategies,
                self.count,
                tuple(sorted(self.intensity.items())),
                self.include_original,
                self.dedup,
                self.seed_by_group,
            )
        )

    def enabled(self, strategy: str) -> bool:
        return strategy in self.strategies
