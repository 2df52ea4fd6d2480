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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from refiner.checkpoints.files import checkpoint_configs, load_checkpoint
from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.batches import labelled_pair
from refiner.data.tokenizers import tokenizer_for
from refiner.evaluate.unroll_curves import unroll_curves
from refiner.infer.halting import CalibrationResult
from refiner.infer.inference import infer_few
from refiner.model.edits import EditGains, EditPolicy, EditSelector
from refiner.model.losses import loss_options, step_weights
from refiner.model.memory import MemoryBank
from refiner.model.network import RefinerModel
from refiner.model.puzzles import PuzzleIndex, SparsePuzzleOptimizer, batch_puzzle_ids
from refiner.model.step_values import StepRecord
from refiner.train import orchestrator_state
from refiner.train.build import placed_model, unwrap
from refiner.train.fast_path import FAST_PATH_MODE, CompileSetting, fast_path_enabled
from refiner.train.gradient_step import drop_gradients, step_on_gradients
from refiner.train.gradient_window import cut_outside_window, draw_window_end
from refiner.train.grokfast import GrokfastFilter
from refiner.train.orchestrator_state import HISTORY_LENGTH
from refiner.train.step_metrics import StepMetrics
from refiner.train.update_metrics import read_update, step_losses, step_metrics, supervised
from refiner.train.weight_average import WeightAverage

DEFAULT_TASK_TYPE = "sequence"  # inference's edit history before any training
DEFAULT_PUZZLE_LR = 1e-2  # sign-SGD step of the puzzle table (TrainingConfig.puzzle_lr)


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
        self.edit_selector = EditSelector.from_config(c)
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
        self.loss_options = loss_options(c.step_loss_weights, core.config.vocab_size, device)
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
        return cls(
            placed_model(model_config, device, seed, wrap_model),
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
        inputs, target = labelled_pair(batch, self.device)
        c = self.config
        mode = self.core.config.puzzle_embedding
        puzzle_ids = batch_puzzle_ids(batch, mode, self.device, required=True)
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
                loss_options=self.loss_options,
            )
        records = unroll.steps
        weights = step_weights(c.step_loss_weights, T, K, self.window_end)  # [T]
        weights = weights.to(self.device, torch.float32)
        per_type, per_step = step_losses(records, c)  # [3, T], [T]
        loss = (weights * per_step).sum()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.core.parameters() if p.grad is not None]
        update = read_update(loss, params, self.device, weights, per_type, records, per_step, gains)
        norm = update.grad_norm
        # The decision uses the gradients only: under DDP they are all-reduced, so every
        # rank sees the same norm and all ranks skip (or step) together. A non-finite
        # loss that leaves the gradients finite (e.g. inf times a zero weight) cannot
        # corrupt the weights, so it only stays out of the loss history.
        skipped = not math.isfinite(norm)
        lr = optimizer.param_groups[0]["lr"]
        clipped = False
        if skipped:
            drop_gradients(optimizer, self.puzzle_optimizer)
            self.skipped_steps += 1
        else:
            norm, clipped = step_on_gradients(
                self.core,
                params,
                optimizer,
                lr_scheduler,
                norm=norm,
                grokfast=self.grokfast,
                clip_threshold=c.gradient_clip_threshold,
                puzzle_optimizer=self.puzzle_optimizer,
                weight_average=self.weight_average,
            )
            if math.isfinite(update.loss):
                self.loss_history.append(update.loss)
            self.grad_norm_history.append(norm)
            if self.memory_bank is not None:
                solved = supervised(records)[-1].exact
                limit = c.memory_writes_per_step
                self.memory_bank.write_solved(unroll.summary, unroll.latent, solved, limit)
        self.step_count += 1
        for (strategy, _), gain in zip(gains, update.gains, strict=True):
            self.edit_selector.record(task_type, strategy, gain)
        if self.memory_bank is not None:
            self.memory_bank.record_unroll_reads([r.memory_similarity for r in records])

        return step_metrics(
            update,
            records,
            step=self.step_count,
            grad_norm=norm,
            clipped=clipped,
            skipped=skipped,
            skipped_total=self.skipped_steps,
            smoothed_loss=orchestrator_state.smoothed_loss(self),
            lr=lr,
            gradient_steps=K,
            window_end=self.window_end,
        )

    def draw_window_end(self, steps: int, window: int) -> int:
        """The step this update's gradient window ends at: the last one, or with
        ``backprop_window: random`` one drawn uniformly from ``window..steps``, the same
        on every DDP rank and again on a resumed run (seeded by the update number)."""
        return draw_window_end(self.config, self.step_count, steps, window)

    def apply_truncated_backprop(
        self, step_outputs: list[StepRecord], config: OrchestrationConfig | None = None
    ) -> list[StepRecord]:
        """The gradient cut of the training unroll (refiner.train.gradient_window): of its
        T = max_steps_train steps only the K of this update's window carry gradient.

        Returns `step_outputs` with every step outside the window detached. The model's
        unroll calls this after every step with the records so far and continues from
        what it returns, so this is where truncation happens; a detached step drops its
        activations at once, so memory holds the window only."""
        return cut_outside_window(step_outputs, config or self.config, self.window_end)

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

    def evaluate(
        self,
        batch: Mapping[str, torch.Tensor],
        task_type: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Any]:
        """Full unroll (no early stopping) on a labelled batch: acc@t, token acc@t,
        halting probability and type-weighted loss per step (`task_type`: as inference;
        refiner.evaluate.unroll_curves). Changes no state."""
        steps = steps or self.config.max_steps_train
        task_type = self._task_type(task_type)
        return unroll_curves(self, batch, task_type, steps, self.loss_options)

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
        (refiner.infer.inference.infer_few, which documents the result's keys).

        `early_stopping=False` (or config.stopping.early_stopping=False) runs every
        sample to the step limit. `task_type` picks the edit history to choose edits
        from; by default the task type this orchestrator was trained on. Changes no
        state except memory-bank read counters. `puzzle_ids` [B]: each row's puzzle
        identity (`puzzle_ids_for`), with a puzzle embedding (None: unknown)."""
        return infer_few(
            self,
            input_ids,
            max_steps=max_steps_override,  # None: the config's (a calibration may cap it)
            early_stopping=early_stopping,
            task_type=self._task_type(task_type),
            return_traces=return_traces,
            puzzle_ids=puzzle_ids,
        )

    # ------------------------------------------------------------------ stats and state

    def get_training_stats(self) -> dict[str, Any]:
        """Counters, recent gradient norms and losses, edit performance, memory stats
        (refiner.train.orchestrator_state.training_stats)."""
        return orchestrator_state.training_stats(self)

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
        """Everything the orchestrator owns (refiner.train.orchestrator_state.state_of):
        with an EMA, "model" holds the average and "weight_average" the live weights."""
        return orchestrator_state.state_of(self)

    def load_state_dict(self, state: Mapping[str, Any], resume_training: bool = False) -> None:
        """Restore from `state_dict()`, of this version or an older one; with
        `resume_training`, an EMA run continues from its live weights
        (refiner.train.orchestrator_state.restore_state)."""
        orchestrator_state.restore_state(self, state, resume_training)

    # ------------------------------------------------------------------ helpers

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

    def decode(self, ids: list[int]) -> Any:
        """Token ids decoded by the tokenizer (None without one)."""
        if self.tokenizer is None:
            return None
        decoded = self.tokenizer.decode(ids)
        return decoded.tolist() if isinstance(decoded, np.ndarray) else decoded
