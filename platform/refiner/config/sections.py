"""Configuration: the model's and the orchestrator's dataclasses.

Loading (key paths in errors, "did you mean", type checks, ``--set`` overrides) is
``refiner.config.loader``; this module only declares the fields, their defaults and the
rules between them. Enum-like fields are ``Literal`` types: the loader checks them (with a
"did you mean" hint), also when a config is built directly in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from refiner.augment.strategies import LABEL_CONSISTENT_STRATEGIES, AugmentationStrategy
from refiner.config.loader import ConfigError, YamlConfig, require
from refiner.data.tokenizers import MAX_SYMBOLS, VOCAB_SIZE

__all__ = [
    "EDIT_SELECTORS",
    "EDIT_STRATEGIES",
    "ConfigError",
    "GrokfastConfig",
    "ModelConfig",
    "OrchestrationConfig",
    "StepLossWeights",
    "StoppingConfig",
]

EditStrategy = Literal["replace", "patch", "append"]
StepSchedule = Literal["uniform", "linear", "exponential", "explicit"]
EditSelection = Literal["epsilon_greedy", "ucb"]
GrokfastMode = Literal["off", "ema", "ma"]
PositionalEncoding = Literal["rope", "learned"]
AttentionLayout = Literal["sequence", "grid"]
PuzzleEmbeddingMode = Literal["off", "per_puzzle", "per_augmentation"]
PatienceSignal = Literal["score", "canvas"]
BackpropWindow = Literal["last", "random"]

EDIT_STRATEGIES: tuple[str, ...] = get_args(EditStrategy)
STEP_SCHEDULES: tuple[str, ...] = get_args(StepSchedule)
EDIT_SELECTORS: tuple[str, ...] = get_args(EditSelection)
GROKFAST_MODES: tuple[str, ...] = get_args(GrokfastMode)
POSITIONAL_ENCODINGS: tuple[str, ...] = get_args(PositionalEncoding)
PUZZLE_MODES: tuple[str, ...] = get_args(PuzzleEmbeddingMode)
PATIENCE_SIGNALS: tuple[str, ...] = get_args(PatienceSignal)


# ----------------------------------------------------------------------------- model


@dataclass
class ModelConfig(YamlConfig):
    """Sizes of the RefinerModel and its memory bank."""

    vocab_size: int = VOCAB_SIZE
    seq_len: int = 64  # every batch is padded to exactly this many positions
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2  # layers of the shared block stack
    mlp_ratio: float = 4.0  # hidden width of the gated MLP, as a multiple of d_model
    dropout: float = 0.0
    latent_cycles: int = 2  # block-stack passes over the latent per refinement step
    positional: PositionalEncoding = "rope"  # rotary (in attention) or learned (added once)
    rope_base: float = 10000.0
    # Local attention: position i sees positions j with |i - j| <= attention_window (null:
    # all). Information then moves at most window * layers positions per refinement step.
    attention_window: int | None = None
    # How the window is measured. "sequence": |i - j|. "grid": the rows are row-major
    # grids grid_width wide, and i sees j when their rows and their columns each differ by
    # at most attention_window (a 2D neighbourhood, as a convolution sees one).
    attention_layout: AttentionLayout = "sequence"
    grid_width: int = 0  # with the grid layout: set from the task file, stored in checkpoints
    halt_bias_init: float = -5.0  # halt logit starts at -5 - ln(seq_len): never halts at first
    memory_capacity: int = 256  # entries in the MemoryBank; 0 turns the memory off
    memory_top_k: int = 4  # entries mixed into one read
    memory_hit_threshold: float = 0.9  # cosine similarity that counts a read as a hit
    # Puzzle conditioning (refiner.model.puzzles): a learned d_model vector per puzzle identity
    # (group_id; per_augmentation: per augmented copy, as HRM/TRM), added to the input
    # embedding. On for ARC; off by default. Trained by training.puzzle_lr (sign-SGD).
    puzzle_embedding: PuzzleEmbeddingMode = "off"
    # Table rows (1 reserved "unknown" + identities): set from the task file by the
    # training run (refiner.config.experiment.fit_puzzle_table), stored in checkpoints.
    puzzle_identities: int = 0

    def validate(self) -> None:
        require(
            self.puzzle_identities >= 0,
            f"puzzle_identities: must be >= 0, got {self.puzzle_identities}",
        )
        require(self.vocab_size >= 5, f"vocab_size: must be >= 5, got {self.vocab_size}")
        require(self.seq_len >= 1, f"seq_len: must be >= 1, got {self.seq_len}")
        for name in ("d_model", "n_heads", "n_layers", "latent_cycles"):
            require(getattr(self, name) >= 1, f"{name}: must be >= 1, got {getattr(self, name)}")
        require(
            self.d_model % self.n_heads == 0,
            f"d_model: {self.d_model} is not divisible by n_heads={self.n_heads}",
        )
        require(self.mlp_ratio > 0, f"mlp_ratio: must be > 0, got {self.mlp_ratio}")
        require(0.0 <= self.dropout < 1.0, f"dropout: must be in [0, 1), got {self.dropout}")
        if self.positional == "rope":
            require(
                (self.d_model // self.n_heads) % 2 == 0,
                f"d_model: rotary positions need an even head size, got {self.d_model // self.n_heads}",
            )
        require(
            self.attention_window is None or self.attention_window >= 1,
            f"attention_window: must be >= 1 or null, got {self.attention_window}",
        )
        require(self.grid_width >= 0, f"grid_width: must be >= 0, got {self.grid_width}")
        require(
            self.attention_layout == "sequence" or self.attention_window is not None,
            "attention_layout: grid shapes the local attention window; set attention_window",
        )
        require(
            self.memory_capacity >= 0, f"memory_capacity: must be >= 0, got {self.memory_capacity}"
        )
        require(self.memory_top_k >= 1, f"memory_top_k: must be >= 1, got {self.memory_top_k}")
        require(
            -1.0 <= self.memory_hit_threshold <= 1.0,
            f"memory_hit_threshold: a cosine similarity in [-1, 1], got {self.memory_hit_threshold}",
        )


# ----------------------------------------------------------------------------- orchestration


@dataclass
class StepLossWeights(YamlConfig):
    """Weights per loss type, and how the per-step losses are weighted over the unroll.

    Step weights over the T = `max_steps_train` steps: uniform w_t = 1; linear w_t = t;
    exponential w_t = decay^(T - t) (recent steps weigh more); explicit: `steps`, one
    non-negative weight per training step. They are normalised to sum to 1 over the steps
    that carry gradient (the last `backprop_truncate_steps` with truncation, else all T);
    earlier steps weigh 0 in the loss (their losses are still reported), so truncation
    does not scale the gradient down (`refiner.model.losses.step_weights`).

    `target_symbols` weighs the token loss by the target's symbol: {symbol: weight},
    every other symbol 1 (the weighted mean of PyTorch's `cross_entropy(weight=...)`).
    A rare symbol the answer must keep (the path of a maze) weighs more, so the model
    drops it only when it is sure: argmax then needs p(symbol) < 1 / (1 + weight).
    """

    token: float = 1.0
    halting: float = 0.5
    quality: float = 0.5
    schedule: StepSchedule = "exponential"
    decay: float = 0.8
    steps: list[float] | None = None
    target_symbols: dict[str, float] | None = None

    def validate(self) -> None:
        for symbol, weight in (self.target_symbols or {}).items():
            require(
                symbol.isdigit() and int(symbol) < MAX_SYMBOLS,
                f"target_symbols.{symbol}: a symbol is an integer in [0, {MAX_SYMBOLS})",
            )
            require(
                math.isfinite(weight) and weight >= 0,
                f"target_symbols.{symbol}: a weight must be finite and >= 0, got {weight}",
            )
        for name in ("token", "halting", "quality"):
            value = getattr(self, name)
            require(value >= 0, f"{name}: loss weights must be >= 0, got {value}")
        require(self.token + self.halting + self.quality > 0, "token: all loss weights are zero")
        require(0 < self.decay <= 1, f"decay: must be in (0, 1], got {self.decay}")
        if self.schedule == "explicit":
            require(
                self.steps is not None, "steps: schedule 'explicit' needs a list of step weights"
            )
        elif self.steps is not None:
            raise ConfigError(
                f"steps: only used with schedule 'explicit' (schedule is {self.schedule!r})"
            )
        if self.steps is not None:
            require(
                all(w >= 0 for w in self.steps),
                f"steps: step weights must be >= 0, got {self.steps}",
            )
            require(sum(self.steps) > 0, "steps: at least one step weight must be > 0")


@dataclass
class StoppingConfig(YamlConfig):
    """When inference stops a sample (checked in this order, after every step)."""

    early_stopping: bool = True  # False: every sample runs to max steps
    act_threshold: float | None = 0.5  # stop when sigmoid(halting logit) >= this
    quality_threshold: float | None = 0.95  # stop when the canvas score >= this
    patience: int | None = 3  # stop after this many stale steps (see patience_signal)
    min_improvement: float = 1e-3  # a score gain below this does not count as improvement
    # What makes a step stale for patience: "score" (no score gain of min_improvement)
    # or "canvas" (the edit left the canvas unchanged). Neither won on every model
    # measured (bench/results/calibration.md); calibration tries both.
    patience_signal: PatienceSignal = "score"
    # Calibration (refiner.infer.calibration) may lose at most this many accuracy points
    # against running every sample to the step limit.
    max_accuracy_loss: float = 0.5
    # ... with this many standard errors to spare (L rows lost count as L + m*sqrt(L)).
    # The search picks the best of ~10^5 settings on the same rows, so the winner's loss
    # there is optimistic. Over many calibration sets drawn from new puzzles
    # (bench/bench_calibration_selection.py), m = 1 brought the mean loss on other new
    # puzzles from 0.86 to 0.39 points (sudoku 6x6, 200 rows), 0.42 -> 0.23 (1,000 rows),
    # 0.71 -> 0.29 (sudoku 4x4) and 0.64 -> 0.51 (parity, 410 rows) for 1-4% more steps;
    # m = 1.64 was safer still on large sets but cost parity 2.13 -> 2.81 mean steps.
    loss_margin_sigmas: float = 1.0
    # Calibrate at every validation checkpoint of training (on the validation rows, step
    # limit up to max_steps_infer): the chosen settings replace the ones above in
    # inference and travel with the checkpoint. False (or early_stopping false): inference
    # uses the ones above.
    calibrate: bool = True
    # Calibrate on every validation row in this many views (the run's label-consistent
    # augmentations): more rows when held-out puzzles are few. Over 60 draws of 200
    # sudoku 6x6 puzzles (bench/bench_calibration_selection.py), the settings chosen
    # lost 0.55 points on average on 2,048 new puzzles; on 5 views of the same 200, 0.23;
    # on 10, 0.29. Costs N times the calibration pass at every checkpoint.
    calibration_views: int = 1

    def validate(self) -> None:
        for name in ("act_threshold", "quality_threshold"):
            value = getattr(self, name)
            require(
                value is None or 0 < value <= 1, f"{name}: must be in (0, 1] or null, got {value}"
            )
        require(
            self.patience is None or self.patience >= 1,
            f"patience: must be >= 1 or null, got {self.patience}",
        )
        require(
            self.min_improvement >= 0, f"min_improvement: must be >= 0, got {self.min_improvement}"
        )
        require(
            0 <= self.max_accuracy_loss <= 100,
            f"max_accuracy_loss: must be in [0, 100] (accuracy points), got {self.max_accuracy_loss}",
        )
        require(
            self.loss_margin_sigmas >= 0,
            f"loss_margin_sigmas: must be >= 0, got {self.loss_margin_sigmas}",
        )
        require(
            self.calibration_views >= 1,
            f"calibration_views: must be >= 1, got {self.calibration_views}",
        )


@dataclass
class GrokfastConfig(YamlConfig):
    """Grokfast gradient filter (Lee et al. 2024): amplify the slow gradient component.

    ema: mu <- alpha*mu + (1-alpha)*g ; g <- g + lamb*mu.
    ma:  g <- g + lamb*mean(last `window` gradients) (once the window is full if warmup).
    """

    mode: GrokfastMode = "off"
    alpha: float = 0.98
    lamb: float = 2.0
    window: int = 100
    warmup: bool = True

    def validate(self) -> None:
        require(0 <= self.alpha < 1, f"alpha: must be in [0, 1), got {self.alpha}")
        require(self.lamb >= 0, f"lamb: must be >= 0, got {self.lamb}")
        require(self.window >= 1, f"window: must be >= 1, got {self.window}")


MAX_STEPS = 256  # refinement steps in one unroll or one inference call


def check_step_budget(max_steps: int | None, name: str = "max_steps") -> None:
    """A step budget given at inference time (None: the model's own) must be in
    [1, MAX_STEPS]; it may exceed the training unroll."""
    if max_steps is not None and not 1 <= max_steps <= MAX_STEPS:
        raise ValueError(f"{name}: must be in [1, {MAX_STEPS}], got {max_steps}")


@dataclass
class OrchestrationConfig(YamlConfig):
    """Everything the UnifiedRefinerOrchestrator does: train many steps, infer few.

    Augmentation defaults to the label-consistent strategies (paraphrase,
    format_variation), which transform input and target together. The input-only ones
    (token_noise, position_shift, masking) perturb the input and keep the target, which
    is only right when the answer survives the perturbation: they are opt-in, and
    ``refiner.config.experiment.prepare_experiment`` refuses them for task kinds where they make
    wrong labels (parity: every input bit decides the target; sudoku: noise and shifts
    change the puzzle, see ``refiner.augment.strategies.LABEL_BREAKING``). Generic
    sequence tasks have no label-consistent strategy: with the defaults their rows are
    copies of the task.
    """

    max_steps_train: int = 16
    # May exceed max_steps_train: a step is one shared function, and models often keep
    # improving past their training unroll (sudoku 6x6: 87% exact at 8 steps, 99% at 16).
    max_steps_infer: int = 4
    truncated_backprop: bool = True
    backprop_truncate_steps: int = 8  # K: gradients flow through the last K steps only
    # Where the K-step gradient window sits. "last": steps T-K+1..T, every update.
    # "random": each update ends its window at a step drawn from K..T, and the steps after
    # it run without gradient; so the gradient also sees the half-done canvases of early
    # steps, not only the nearly solved ones a good model hands to its last steps (the
    # "progressive loss" of Bansal et al. 2022, for recurrent maze solvers).
    backprop_window: BackpropWindow = "last"
    step_loss_weights: StepLossWeights = field(default_factory=StepLossWeights)
    gradient_clip_threshold: float | None = 1.0  # max global grad norm; null: no clipping
    # EMA of the weights (refiner.train.weight_average; TRM uses 0.999): evaluation and
    # checkpoints read the average, which evens out small-data runs. null: the live weights.
    ema_decay: float | None = None
    loss_smoothing_window: int = 3
    # Label-consistent strategies only by default; input-only noise is opt-in (see above).
    augmentation_strategies: list[AugmentationStrategy] = field(
        default_factory=lambda: list(LABEL_CONSISTENT_STRATEGIES)
    )
    augmentation_count: int = 300
    canvas_edit_strategies: list[EditStrategy] = field(
        default_factory=lambda: list(get_args(EditStrategy))  # every strategy
    )
    adaptive_edit_selection: bool = True
    edit_selection: EditSelection = "epsilon_greedy"
    edit_exploration: float = 0.1  # epsilon, or the UCB exploration coefficient
    patch_budget: float = 0.25  # fraction of positions a `patch` edit may change
    append_budget: float = 0.25  # fraction of positions an `append` edit fills
    stopping: StoppingConfig = field(default_factory=StoppingConfig)
    grokfast: GrokfastConfig = field(default_factory=GrokfastConfig)
    memory_writes_per_step: int = 8  # solved samples written to the memory bank per step
    seed: int = 0  # edit-selection exploration

    def calibration_strategies(self) -> tuple[str, ...]:
        """The run's strategies that keep a row's answer right: calibration views use
        only these (an input-only strategy would change what a correct canvas is)."""
        return tuple(s for s in self.augmentation_strategies if s in LABEL_CONSISTENT_STRATEGIES)

    def validate(self) -> None:
        require(
            1 <= self.max_steps_train <= MAX_STEPS,
            f"max_steps_train: must be in [1, {MAX_STEPS}], got {self.max_steps_train}",
        )
        require(
            1 <= self.max_steps_infer <= MAX_STEPS,
            f"max_steps_infer: must be in [1, {MAX_STEPS}], got {self.max_steps_infer}",
        )
        if self.truncated_backprop:
            require(
                1 <= self.backprop_truncate_steps <= self.max_steps_train,
                f"backprop_truncate_steps: must be in [1, max_steps_train={self.max_steps_train}], "
                f"got {self.backprop_truncate_steps}",
            )
        w = self.step_loss_weights
        if w.steps is not None:
            require(
                len(w.steps) == self.max_steps_train,
                f"step_loss_weights.steps: has {len(w.steps)} weights, "
                f"max_steps_train is {self.max_steps_train}",
            )
            window = self.gradient_window()
            require(
                sum(w.steps[-window:]) > 0,
                f"step_loss_weights.steps: the last {window} steps carry the gradient "
                f"(backprop_truncate_steps) and all weigh 0, so training would learn nothing",
            )
            if self.backprop_window == "random":
                ends = range(window, self.max_steps_train + 1)
                empty = [end for end in ends if sum(w.steps[end - window : end]) <= 0]
                require(
                    not empty,
                    f"step_loss_weights.steps: with backprop_window random a window of {window}"
                    f" steps may end at step {empty[0] if empty else 0}, where all weigh 0",
                )
        require(
            self.gradient_clip_threshold is None or self.gradient_clip_threshold > 0,
            f"gradient_clip_threshold: must be > 0 or null, got {self.gradient_clip_threshold}",
        )
        require(
            self.ema_decay is None or 0 < self.ema_decay < 1,
            f"ema_decay: must be in (0, 1) or null, got {self.ema_decay}",
        )
        require(
            self.loss_smoothing_window >= 1,
            f"loss_smoothing_window: must be >= 1, got {self.loss_smoothing_window}",
        )
        _require_unique("augmentation_strategies", self.augmentation_strategies)
        require(
            self.stopping.calibration_views == 1 or bool(self.calibration_strategies()),
            f"stopping.calibration_views: {self.stopping.calibration_views} views need a"
            " label-consistent strategy (paraphrase, format_variation) in"
            f" augmentation_strategies, got {self.augmentation_strategies}",
        )
        require(
            self.augmentation_count >= 1,
            f"augmentation_count: must be >= 1, got {self.augmentation_count}",
        )
        _require_unique("canvas_edit_strategies", self.canvas_edit_strategies)
        require(
            len(self.canvas_edit_strategies) >= 1,
            "canvas_edit_strategies: needs at least one strategy",
        )
        require(
            self.edit_exploration >= 0,
            f"edit_exploration: must be >= 0, got {self.edit_exploration}",
        )
        for name in ("patch_budget", "append_budget"):
            value = getattr(self, name)
            require(0 < value <= 1, f"{name}: a fraction of positions in (0, 1], got {value}")
        require(
            self.memory_writes_per_step >= 0,
            f"memory_writes_per_step: must be >= 0, got {self.memory_writes_per_step}",
        )

    def gradient_window(self, steps: int | None = None) -> int:
        """How many of the last steps of a `steps`-step unroll carry gradient."""
        steps = self.max_steps_train if steps is None else steps
        return min(self.backprop_truncate_steps, steps) if self.truncated_backprop else steps


def _require_unique(key: str, names: Sequence[str]) -> None:
    require(len(set(names)) == len(names), f"{key}: lists a strategy twice: {list(names)}")
