"""UnifiedRefinerOrchestrator: train many steps, infer few.

Training unrolls `max_steps_train` refinement steps in one model forward (see
refiner.model.network), supervises every step, and backpropagates through the last
`backprop_truncate_steps` only. Inference (refiner.infer.inference) runs at most
`max_steps_infer` steps and lets every sample stop on its own.

The seed's methods are the code paths that run: the unroll chooses every step's edit
through `select_edit_strategy` and applies the gradient cut through
`apply_truncated_backprop` (both passed into the model's forward as callbacks, so under
DDP the unroll stays one forward call), so a subclass that overrides them changes
training.

`self.model` may be a DDP wrapper: training calls it (one forward per backward);
everything else uses the unwrapped module (`self.core`).
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn as nn

from refiner.checkpoints.files import checkpoint_configs, load_checkpoint
from refiner.checkpoints.upgrades import STATE_VERSION, VERSION_KEY, upgrade_state
from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import tokenizer_for
from refiner.infer.halting import CalibrationResult
from refiner.infer.inference import infer_few
from refiner.model.edits import EditGains, EditPolicy, EditSelector
from refiner.model.losses import LOSS_TYPES, StepLosses, step_weights, token_loss_weights
from refiner.model.memory import MemoryBank
from refiner.model.network import RefinerModel, StepRecord, keep_last
from refiner.model.puzzles import BATCH_KEY, PuzzleIndex, SparsePuzzleOptimizer
from refiner.train.grokfast import GrokfastFilter
from refiner.train.step_metrics import StepMetrics
from refiner.train.weight_average import WeightAverage

CompileSetting = Literal["auto", "on", "off"]
# torch.compile mode of the fast path per device type (None: inductor's default, which
# compiles in seconds; "max-autotune-no-cudagraphs" tunes GEMMs for minutes)
FAST_PATH_MODE: dict[str, str | None] = {"cuda": None, "cpu": None}
HISTORY_LENGTH = 100  # recent losses and gradient norms kept (and checkpointed)
DEFAULT_TASK_TYPE = "sequence"  # inference's edit history before any training
DEFAULT_PUZZLE_LR = 1e-2  # sign-SGD step of the puzzle table (TrainingConfig.puzzle_lr)


def fast_path_enabled(setting: CompileSetting, device: torch.device) -> bool:
    """`training.compile` resolved for a device: auto is on for CUDA only."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"compile must be 'auto', 'on' or 'off', got {setting!r}")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def unwrap(model: nn.Module) -> RefinerModel:
    """The RefinerModel inside a DDP (or similar) wrapper."""
    return cast(RefinerModel, getattr(model, "module", model))


def supervised(records: list[StepRecord]) -> list[StepLosses]:
    """The loss terms of each step of an unroll that had a target."""
    losses = [r.losses for r in records if r.losses is not None]
    if len(losses) != len(records):
        raise ValueError("step losses need an unroll with a target")
    return losses


def step_losses(
    records: list[StepRecord], config: OrchestrationConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The supervised records' loss terms: (per type [len(LOSS_TYPES), T], and the
    type-weighted loss of each step [T]), both still attached to the graph."""
    losses = supervised(records)
    per_type = torch.stack(
        [torch.stack([step.of_type(name) for step in losses]) for name in LOSS_TYPES]
    )
    w = config.step_loss_weights
    weighted = w.token * per_type[0] + w.halting * per_type[1] + w.quality * per_type[2]
    return per_type, weighted


class UnifiedRefinerOrchestrator:
    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        memory_bank: MemoryBank | None = None,
        config: OrchestrationConfig | None = None,
        device: torch.device | str | None = None,
        autocast: bool | None = None,
        compile: CompileSetting = "auto",
    ) -> None:
        """`autocast`: bf16 autocast for forwards; default on for CUDA, off for CPU.
        `compile`: the fast path (`RefinerModel.enable_fast_path`): "on", "off", or
        "auto" (on for CUDA, off for CPU, where compiling buys little and costs warm-up).

        `from_config` and `from_checkpoint` build all of this from configs."""
        core = unwrap(model)
        if device is None:
            device = next(core.parameters()).device
        device = torch.device(device)
        if model is core:
            model.to(device)  # a wrapper is already placed; moving it would break DDP
        if memory_bank is not None and not core.use_memory:
            raise ValueError("a memory bank was given but the model has memory_capacity=0")
        self.model = model
        self.tokenizer = tokenizer
        self.memory_bank = memory_bank.to(device) if memory_bank is not None else None
        self.config = config if config is not None else OrchestrationConfig()
        self.device = device
        self.autocast = device.type == "cuda" if autocast is None else autocast
        if fast_path_enabled(compile, device) and not core.fast_path:
            core.enable_fast_path(FAST_PATH_MODE.get(device.type))
        c = self.config
        self.edit_selector = EditSelector(
            c.canvas_edit_strategies,
            c.adaptive_edit_selection,
            c.edit_selection,
            c.edit_exploration,
            c.seed,
        )
        # Every edit (training, evaluation, inference) chooses through
        # `select_edit_strategy` (a subclass may override it) and applies here.
        self.edit_policy = EditPolicy(
            self.select_edit_strategy,
            c.patch_budget,
            c.append_budget,
            scores_for_choice=self.edit_selector.adaptive,
        )
        self.grokfast = GrokfastFilter(c.grokfast)
        self.weight_average = WeightAverage(core, c.ema_decay) if c.ema_decay else None
        token_weight = token_loss_weights(c.step_loss_weights, core.config.vocab_size)
        self.token_weight = token_weight.to(device) if token_weight is not None else None
        self.step_count = 0  # train_step calls, skipped ones included
        self.window_end: int | None = None  # this update's gradient window (None: the last step)
        self.skipped_steps = 0  # updates refused by the NaN/Inf guard
        self.loss_history: deque[float] = deque(maxlen=HISTORY_LENGTH)
        self.grad_norm_history: deque[float] = deque(maxlen=HISTORY_LENGTH)
        self.task_type: str | None = None  # what train_step last trained on
        self._explore: bool | None = None  # edit exploration; None: in train mode
        # Puzzle conditioning (refiner.model.puzzles): group_id -> table row, and the table's
        # own stateless sparse optimizer (its LR follows the dense optimizer's schedule).
        self.puzzle_index: PuzzleIndex | None = None
        self.puzzle_optimizer = (
            SparsePuzzleOptimizer(core.puzzle_embed, DEFAULT_PUZZLE_LR)
            if core.puzzle_embed is not None
            else None
        )
        # Stopping settings chosen on held-out rows (refiner.infer.calibration); None: config's
        self.calibration: CalibrationResult | None = None
        self.training = True
        self.train()

    # ------------------------------------------------------------------ building

    @classmethod
    def from_config(
        cls,
        model_config: ModelConfig,
        config: OrchestrationConfig | None = None,
        *,
        task_type: str = DEFAULT_TASK_TYPE,
        num_symbols: int | None = None,
        tokenizer: Any = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
        wrap_model: Callable[[nn.Module], nn.Module] | None = None,
        autocast: bool | None = None,
        compile: CompileSetting = "auto",
    ) -> UnifiedRefinerOrchestrator:
        """A fresh refiner: the model, the memory bank its config asks for, and the
        tokenizer of `task_type` (unless `tokenizer` is given).

        `seed` seeds torch before the weights are initialised. `wrap_model` (e.g. Ray
        Train's `prepare_model`) wraps the placed model for DDP before the orchestrator
        is built, so that training goes through the wrapper."""
        if seed is not None:
            torch.manual_seed(seed)
        model: nn.Module = RefinerModel(model_config)
        if device is not None:
            model.to(device)
        if wrap_model is not None:
            model = wrap_model(model)
        return cls(
            model,
            tokenizer if tokenizer is not None else tokenizer_for(task_type, num_symbols),
            MemoryBank.from_config(model_config, device or "cpu"),
            config,
            device=device,
            autocast=autocast,
            compile=compile,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        *,
        task_type: str | None = None,
        num_symbols: int | None = None,
        tokenizer: Any = None,
        compile: CompileSetting = "auto",
    ) -> UnifiedRefinerOrchestrator:
        """The refiner a checkpoint file holds (weights-only load; configs, weights,
        histories, edit statistics, memory bank and RNG states restored), in eval mode.

        The tokenizer is that of `task_type` (default: the task type the checkpoint was
        trained on) unless `tokenizer` is given."""
        model_config, config = checkpoint_configs(path)
        orchestrator = cls.from_config(
            model_config, config, tokenizer=tokenizer, device=device, compile=compile
        )
        load_checkpoint(path, orchestrator)
        if tokenizer is None:
            orchestrator.tokenizer = tokenizer_for(
                task_type or orchestrator.task_type or DEFAULT_TASK_TYPE, num_symbols
            )
        return orchestrator.eval()

    @property
    def core(self) -> RefinerModel:
        return unwrap(self.model)

    def train(self) -> UnifiedRefinerOrchestrator:
        self.training = True
        self.model.train()
        return self

    def eval(self) -> UnifiedRefinerOrchestrator:
        self.training = False
        self.model.eval()
        return self

    # ------------------------------------------------------------------ training

    def train_step(
        self,
        batch: Mapping[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        task_type: str = DEFAULT_TASK_TYPE,
        lr_scheduler: Any = None,
    ) -> StepMetrics:
        """One optimizer update from one batch: unroll, weighted loss, backward, NaN/Inf
        guard, Grokfast, clip, optimizer (and LR scheduler) step.

        Returns the update's metrics (refiner.train.step_metrics.StepMetrics: losses, acc@t,
        gradient norm, clipped/skipped, edits, LR). They are this process's; under DDP
        only the gradients are averaged."""
        if not self.training:
            self.train()
        self.task_type = task_type
        inputs, target = self._batch(batch)
        puzzle_ids = self._puzzle_ids(batch, required=True)
        c = self.config
        T = c.max_steps_train
        K = c.gradient_window(T)
        self.window_end = self.draw_window_end(T, K)
        learn_edits = c.adaptive_edit_selection and len(c.canvas_edit_strategies) > 1
        gains: EditGains = []
        edit_fn = self.edit_policy.edit_fn(
            task_type, target=target if learn_edits else None, gains=gains
        )
        with self.autocast_context(), self.exploring(True):
            unroll = self.model(
                inputs,
                steps=T,
                target=target,
                edit_fn=edit_fn,
                memory=self.memory_snapshot(),
                truncate=self.apply_truncated_backprop,
                puzzle_ids=puzzle_ids,
                token_weight=self.token_weight,
            )
        records = unroll.steps
        weights = step_weights(c.step_loss_weights, T, K, self.window_end)  # [T]
        weights = weights.to(self.device, torch.float32)
        per_type, per_step = step_losses(records, c)  # [3, T], [T]
        loss = (weights * per_step).sum()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.core.parameters() if p.grad is not None]
        # Every metric of the update leaves the device in this one transfer (no host
        # syncs inside the unroll): loss, gradient norm, per-type totals [3], the
        # per-step curves [4, T] and the edit gains.
        totals = (weights[None] * per_type.detach()).sum(1)  # [3]
        packed = torch.cat(
            [
                loss.detach().float().reshape(1),
                _grad_norm_tensor(params, self.device).reshape(1),
                totals.float(),
                _curves_tensor(records, per_step).flatten(),
                torch.stack([g for _, g in gains]).float() if gains else totals.new_zeros(0),
            ]
        ).tolist()
        loss_value, grad_norm = packed[0], packed[1]
        totals_list = packed[2:5]
        curves = dict(zip(_CURVES, _rows(packed[5 : 5 + 4 * T], T), strict=True))
        gain_values = packed[5 + 4 * T :]
        # The decision uses the gradients only: under DDP they are all-reduced, so every
        # rank sees the same norm and all ranks skip (or step) together. A non-finite
        # loss that leaves the gradients finite (e.g. inf times a zero weight) cannot
        # corrupt the weights, so it only stays out of the loss history.
        skipped = not math.isfinite(grad_norm)
        clipped = False
        lr = optimizer.param_groups[0]["lr"]
        if skipped:
            optimizer.zero_grad(set_to_none=True)
            if self.puzzle_optimizer is not None:
                self.puzzle_optimizer.zero_grad()
            self.skipped_steps += 1
        else:
            if self.grokfast.enabled:
                self.grokfast.apply(self.core.named_parameters())
                grad_norm = _grad_norm(params)
            if c.gradient_clip_threshold is not None:
                torch.nn.utils.clip_grad_norm_(params, c.gradient_clip_threshold)
                clipped = grad_norm > c.gradient_clip_threshold
            optimizer.step()
            if self.puzzle_optimizer is not None:
                self.puzzle_optimizer.step(_lr_fraction(optimizer))
            if lr_scheduler is not None:
                lr_scheduler.step()
            if self.weight_average is not None:
                self.weight_average.update(self.core)
            if math.isfinite(loss_value):
                self.loss_history.append(loss_value)
            self.grad_norm_history.append(grad_norm)
            self._write_memory(unroll.summary, unroll.latent, supervised(records)[-1].exact)
        self.step_count += 1
        for (strategy, _), gain in zip(gains, gain_values, strict=True):
            self.edit_selector.record(task_type, strategy, gain)
        self._record_memory_reads(records)

        token, halting, quality = (_finite_or_none(v) for v in totals_list)  # LOSS_TYPES order
        return StepMetrics(
            step=self.step_count,
            loss=_finite_or_none(loss_value),
            loss_token=token,
            loss_halting=halting,
            loss_quality=quality,
            step_losses=[_finite_or_none(v) for v in curves["step_losses"]],
            acc_at=curves["acc_at"],
            token_acc_at=curves["token_acc_at"],
            halt_prob_at=curves["halt_prob_at"],
            grad_norm=_finite_or_none(grad_norm),
            clipped=bool(clipped),
            skipped=skipped,
            skipped_total=self.skipped_steps,
            edit_strategies=[r.strategy for r in records],
            smoothed_loss=self._smoothed_loss(),
            lr=None if skipped else lr,
            gradient_steps=K,
            gradient_window_end=self.window_end,
        )

    def draw_window_end(self, steps: int, window: int) -> int:
        """The step this update's gradient window ends at: the last one, or with
        ``backprop_window: random`` one drawn uniformly from ``window..steps``, the same
        on every DDP rank and again on a resumed run (seeded by the update number)."""
        if self.config.backprop_window == "last" or window >= steps:
            return steps
        rng = np.random.default_rng((self.config.seed, self.step_count))
        return int(rng.integers(window, steps + 1))

    def apply_truncated_backprop(
        self, step_outputs: list[StepRecord], config: OrchestrationConfig | None = None
    ) -> list[StepRecord]:
        """The gradient cut of the training unroll: of its T = max_steps_train steps only
        K (config.gradient_window) carry gradient, the last K or, with
        ``backprop_window: random``, the K ending at this update's ``window_end``.

        Returns `step_outputs` with every step outside the window detached: its loss
        terms give no gradient, and the first window step starts from a detached
        latent. The model's unroll calls this after every step with the records so far
        and continues from what it returns, so this is where truncation happens; a
        detached step drops its activations at once, so memory holds the window only."""
        config = config or self.config
        T, K = config.max_steps_train, config.gradient_window()
        end = T if self.window_end is None else min(max(self.window_end, K), T)
        return keep_last(K, T, end)(step_outputs)

    def select_edit_strategy(
        self, step: int, canvas_scores: torch.Tensor | None, task_type: str
    ) -> str:
        """The edit strategy for `step` of an unroll (training, evaluation and inference
        all choose here). Explores only while training (`train_step`)."""
        explore = self.training if self._explore is None else self._explore
        return self.edit_selector.select(step, canvas_scores, task_type, explore=explore)

    @contextlib.contextmanager
    def exploring(self, explore: bool) -> Iterator[None]:
        """Within the block, `select_edit_strategy` explores iff `explore`."""
        saved, self._explore = self._explore, explore
        try:
            yield
        finally:
            self._explore = saved

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(
        self,
        batch: Mapping[str, torch.Tensor],
        task_type: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Any]:
        """Full unroll (no early stopping) on a labelled batch: acc@t, token acc@t,
        halting probability and type-weighted loss per step (`task_type`: as inference).

        Changes no state (no edit-history updates, no memory writes)."""
        inputs, target = self._batch(batch)
        puzzle_ids = self._puzzle_ids(batch)
        steps = steps or self.config.max_steps_train
        was_training = self.core.training
        self.core.eval()
        try:
            with self.autocast_context(), self.exploring(False):
                unroll = self.core(
                    inputs,
                    steps=steps,
                    target=target,
                    edit_fn=self.edit_policy.edit_fn(self._task_type(task_type)),
                    memory=self.memory_snapshot(),
                    puzzle_ids=puzzle_ids,
                    token_weight=self.token_weight,
                )
        finally:
            self.core.train(was_training)
        _, per_step = step_losses(unroll.steps, self.config)
        curves = _curves(unroll.steps, per_step)
        return {
            key: curves[key] for key in ("acc_at", "token_acc_at", "halt_prob_at", "step_losses")
        }

    def inference(
        self,
        input_ids: torch.Tensor | np.ndarray | list,
        return_traces: bool = False,
        max_steps_override: int | None = None,
        early_stopping: bool | None = None,
        task_type: str | None = None,
        puzzle_ids: torch.Tensor | np.ndarray | list | None = None,
    ) -> dict[str, Any]:
        """Refine each sample until it stops; stopped samples leave the active batch
        (the loop is refiner.infer.inference.infer_few).

        `early_stopping=False` (or config.stopping.early_stopping=False) runs every
        sample to the step limit. `task_type` picks the edit history to choose edits
        from; by default the task type this orchestrator was trained on. Changes no
        state except memory-bank read counters. `puzzle_ids` [B]: each row's puzzle
        identity (`puzzle_ids_for`), with a puzzle embedding (None: unknown).
        Returns final_canvas_ids [B][L], final_canvas (decoded by the tokenizer, or None
        without one), steps_taken [B], mean_steps, sample_steps (sum of steps_taken),
        stopping_reason [B] (refiner.infer.halting.STOP_REASONS), stopping_reason_counts,
        final_canvas_scores [B], quality_per_step / halt_prob_per_step (means over the
        samples active at each step), active_per_step, edit_strategy_use, memory (bank
        stats or None), stopping (the settings that ran and their origin: "config",
        "calibrated at update N on M rows" or "early stopping off") and, with
        return_traces, traces: per step its active rows, their
        canvases, scores, halting probabilities, strategy and the rows that stopped.
        """
        c = self.config
        return infer_few(
            self,
            input_ids,
            max_steps=max_steps_override,  # None: the config's (a calibration may cap it)
            early_stopping=c.stopping.early_stopping if early_stopping is None else early_stopping,
            task_type=self._task_type(task_type),
            return_traces=return_traces,
            puzzle_ids=None
            if puzzle_ids is None
            else torch.as_tensor(puzzle_ids, dtype=torch.long),
        )

    # ------------------------------------------------------------------ stats and state

    def get_training_stats(self) -> dict[str, Any]:
        """Counters, recent gradient norms and losses, edit performance, memory stats.

        The seed's key names (`training_mode`, `edit_strategy_performance`,
        `memory_stats`) sit beside this project's (`mode`, `edit_performance`, `memory`)."""
        grads, losses = list(self.grad_norm_history), list(self.loss_history)
        mode = "train" if self.training else "eval"
        edit_performance = self.edit_selector.performance()
        memory = self.memory_bank.get_stats() if self.memory_bank is not None else None
        return {
            "step_count": self.step_count,
            "skipped_steps": self.skipped_steps,
            "mode": mode,
            "training_mode": mode,
            "task_type": self.task_type,
            "gradient_norm": {
                "recent": grads[-1] if grads else None,
                "average": sum(grads) / len(grads) if grads else None,
                "history_length": len(grads),
            },
            "loss": {
                "recent": losses[-1] if losses else None,
                "average": sum(losses) / len(losses) if losses else None,
                "smoothed": self._smoothed_loss(),
                "history_length": len(losses),
            },
            "edit_performance": edit_performance,
            "edit_strategy_performance": edit_performance,
            "memory": memory,
            "memory_stats": memory,
            "config": self.config.to_dict(),
        }

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Inside the block the model holds the EMA of its weights (config.ema_decay),
        which evaluation and checkpoints should read; without an EMA, its live weights."""
        if self.weight_average is None:
            yield
            return
        with self.weight_average.applied(self.core):
            yield

    def state_dict(self) -> dict[str, Any]:
        """Everything the orchestrator owns, as tensors and plain containers. With an EMA
        of the weights, "model" is the average (what evaluation and serving load) and
        "weight_average" the live weights training resumes from."""
        model, weight_average = self.core.state_dict(), None
        if self.weight_average is not None:
            live, model = self.weight_average.module_states(self.core)
            weight_average = {"live_model": live, "updates": self.weight_average.updates}
        return {
            VERSION_KEY: STATE_VERSION,  # how refiner.checkpoints.upgrades reads it later
            "model": model,
            "weight_average": weight_average,
            "model_config": self.core.config.to_dict(),
            "config": self.config.to_dict(),
            "step_count": self.step_count,
            "skipped_steps": self.skipped_steps,
            "task_type": self.task_type,
            "loss_history": list(self.loss_history),
            "grad_norm_history": list(self.grad_norm_history),
            "edit_selector": self.edit_selector.state_dict(),
            "grokfast": self.grokfast.state_dict(),
            "memory_bank": self.memory_bank.state_dict() if self.memory_bank is not None else None,
            "puzzle_index": self.puzzle_index.to_dict() if self.puzzle_index is not None else None,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any], resume_training: bool = False) -> None:
        """Restore from `state_dict()` (of this version or an older one: see
        refiner.checkpoints.upgrades). The orchestrator keeps its own config object.

        The model gets the checkpoint's "model" weights (an EMA run's average); with
        `resume_training`, an EMA run's live weights go back into the model and the
        average behind them, so training continues where it stopped."""
        state = upgrade_state(dict(state))  # an older state gains what it lacks
        self.core.load_state_dict(state["model"])
        averaged = state["weight_average"]
        if self.weight_average is not None:
            if resume_training and averaged is not None:
                self.weight_average.restore(self.core, averaged["live_model"], averaged["updates"])
            else:
                self.weight_average.reset(self.core)
        self.step_count = state["step_count"]
        self.skipped_steps = state["skipped_steps"]
        self.task_type = state["task_type"]
        self.loss_history = deque(state["loss_history"], maxlen=HISTORY_LENGTH)
        self.grad_norm_history = deque(state["grad_norm_history"], maxlen=HISTORY_LENGTH)
        self.edit_selector.load_state_dict(state["edit_selector"])
        self.grokfast.load_state_dict(state["grokfast"], self.device)
        if self.memory_bank is not None and state["memory_bank"] is not None:
            self.memory_bank.load_state_dict(state["memory_bank"])
        if state["puzzle_index"] is not None:
            self.puzzle_index = PuzzleIndex.from_dict(state["puzzle_index"])
        calibration = state["calibration"]
        self.calibration = CalibrationResult.from_dict(calibration) if calibration else None

    # ------------------------------------------------------------------ helpers

    def _batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, target = batch["input"], batch["target"]
        if inputs.shape != target.shape or inputs.dim() != 2:
            raise ValueError(
                f"batch input and target must both be [B, L]; got {tuple(inputs.shape)} and {tuple(target.shape)}"
            )
        return inputs.to(self.device, torch.long), target.to(self.device, torch.long)

    def puzzle_ids_for(
        self, group_ids: list[str] | np.ndarray, aug_index: np.ndarray | None = None
    ) -> torch.Tensor | None:
        """Table rows of rows with these group_ids (unknown groups: the reserved row), or
        None when the model has no puzzle embedding."""
        if self.core.puzzle_embed is None:
            return None
        if self.puzzle_index is None:
            raise ValueError("the model has a puzzle embedding but no puzzle index was set")
        return torch.from_numpy(self.puzzle_index.ids(group_ids, aug_index)).to(self.device)

    def _puzzle_ids(
        self, batch: Mapping[str, torch.Tensor], required: bool = False
    ) -> torch.Tensor | None:
        """The batch's puzzle identities [B] when the model is puzzle-conditioned."""
        if self.core.puzzle_embed is None:
            return None
        ids = batch.get(BATCH_KEY)
        if ids is None:
            if required:
                raise ValueError(
                    f"the model has a puzzle embedding (model.puzzle_embedding="
                    f"{self.core.config.puzzle_embedding!r}) but the batch has no {BATCH_KEY!r}"
                )
            return None
        ids = ids.to(self.device, torch.long).reshape(-1)
        if ids.shape[0] != batch["input"].shape[0]:
            raise ValueError(
                f"batch {BATCH_KEY!r} has {ids.shape[0]} ids for {batch['input'].shape[0]} rows"
            )
        return ids

    def autocast_context(self) -> contextlib.AbstractContextManager:
        """bf16 autocast around forwards when enabled, else nothing."""
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def memory_snapshot(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The memory bank's filled (keys, values), as the model reads them, or None."""
        return self.memory_bank.snapshot() if self.memory_bank is not None else None

    def _task_type(self, task_type: str | None) -> str:
        """A given task type, else the one trained on, else the default."""
        return task_type or self.task_type or DEFAULT_TASK_TYPE

    def _write_memory(
        self, summary: torch.Tensor, latent: torch.Tensor, solved: torch.Tensor
    ) -> None:
        """Write up to memory_writes_per_step solved rows: summary [B, D] as keys, the
        pooled final latent [B, L, D] as values."""
        n = self.config.memory_writes_per_step
        if self.memory_bank is None or n == 0:
            return
        rows = solved.nonzero().squeeze(1)[:n]
        if rows.numel():
            self.memory_bank.write(summary[rows].float(), latent[rows].mean(1).float())

    def _record_memory_reads(self, records: list[StepRecord]) -> None:
        if self.memory_bank is None or self.memory_bank.size == 0:
            return
        reads = [r.memory_similarity for r in records if r.memory_similarity is not None]
        if reads:  # all steps' reads counted in one host transfer
            self.memory_bank.record_reads(torch.cat(reads))

    def _smoothed_loss(self) -> float | None:
        recent = list(self.loss_history)[-self.config.loss_smoothing_window :]
        return sum(recent) / len(recent) if recent else None

    def decode(self, ids: list[int]) -> Any:
        """Token ids decoded by the tokenizer (None without one)."""
        if self.tokenizer is None:
            return None
        decoded = self.tokenizer.decode(ids)
        return decoded.tolist() if isinstance(decoded, np.ndarray) else decoded


def _grad_norm_tensor(params: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The global gradient norm as a 0-d fp32 tensor (no host sync) of parameters that
    have gradients."""
    grads = [p.grad.float() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _grad_norm(params: Sequence[torch.Tensor]) -> float:
    if not params:
        return 0.0
    return _grad_norm_tensor(params, params[0].device).item()


_CURVES = ("step_losses", "acc_at", "token_acc_at", "halt_prob_at")


def _curves_tensor(records: list[StepRecord], per_step: torch.Tensor) -> torch.Tensor:
    """Per-step metrics of a supervised unroll, [4, T] on the device: step_losses
    (type-weighted), acc_at (exact match), token_acc_at, halt_prob_at (_CURVES order)."""
    return torch.stack(
        [
            per_step.detach().float(),
            torch.stack([step.exact.float().mean() for step in supervised(records)]),
            torch.stack([step.token_acc for step in supervised(records)]).float(),
            torch.stack([r.halt_prob.mean() for r in records]).float(),
        ]
    )


def _rows(flat: list[float], width: int) -> list[list[float]]:
    return [flat[i : i + width] for i in range(0, len(flat), width)]


def _curves(records: list[StepRecord], per_step: torch.Tensor) -> dict[str, list[float]]:
    """`_curves_tensor` as lists, in one host transfer."""
    return dict(zip(_CURVES, _curves_tensor(records, per_step).tolist(), strict=True))


def _lr_fraction(optimizer: torch.optim.Optimizer) -> float:
    """The dense LR's current fraction of its base (an LR scheduler records the base)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("initial_lr", group["lr"])


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
