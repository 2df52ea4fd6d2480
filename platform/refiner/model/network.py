"""RefinerModel: a small recursive network that refines a canvas step by step.

Layout (TRM-like, position-aligned): input tokens x, the canvas (current draft tokens)
and a latent state z are all [B, L, D] and added position by position, so position i of
the latent reads input i and draft token i directly; attention (non-causal, rotary or
learned positions, optionally local: |i - j| <= attention_window, or a 2D neighbourhood
on grids) mixes positions.

One refinement step:

    inject = embed_in(x) + embed_canvas(canvas) + gate * memory_out(memory read)
    repeat latent_cycles times:   z = blocks(z + inject)      # one shared block stack
    logits = token_head(z)                    # the proposed canvas, [B, L, V]
    quality = quality_head(z)                 # per position: is the proposed token right?
    halt = softmin over positions of halt_head(z)   # is the canvas now exactly right? [B]

The canvas passes between steps as discrete tokens (argmax, then an edit strategy
decides which positions change); gradients cross steps through the latent z.

`forward()` runs the whole T-step unroll in ONE call: DDP allows one forward per
backward, so the canvas edits and the gradient cut (callbacks: the orchestrator's
`select_edit_strategy` and `apply_truncated_backprop`) and the per-step losses all happen
inside it. Every parameter is used in every step, so every parameter gets a gradient
from every backward (no `find_unused_parameters` needed). `step()` is one step, for
inference with per-sample early stopping (no autograd, so it can bypass DDP).

Typed values pass between steps and layers (refiner.model.step_values, shapes beside
the fields): `RefinerState` (the carry), `StepOutput` (one `step()`), `StepRecord` (what
the unroll keeps of a step) and `Unroll` (what `forward()` returns). The gradient cut is
refiner.model.truncation; the loss of a step, refiner.model.losses.

Blocks are post-norm (RMSNorm after each residual add): the same block is applied
T * latent_cycles * n_layers times, and post-norm keeps the latent's scale fixed however
deep the recursion goes; QK-norm bounds the attention logits. The halting and quality
heads read a detached latent: their targets ("is it right yet") move as the model
improves, and letting them backpropagate into the shared latent made parity training
collapse and recover several times per run; detached readouts made that much rarer. The halting head scores every position ("settled?") and takes a soft
minimum, since "the whole canvas is right" is a property of its weakest position.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from refiner.config.sections import ModelConfig
from refiner.data.tokenizers import MASK
from refiner.model.edits import EditFn, canvas_score
from refiner.model.losses import LossInputs, LossOptions, StepLosses, step_loss_terms
from refiner.model.memory import memory_read
from refiner.model.puzzles import PuzzleEmbedding
from refiner.model.step_values import RefinerState, StepOutput, StepRecord, Unroll
from refiner.model.truncation import TruncateFn, keep_last, steps_kept_by

FAST_PATH_GRAPHS = 64  # compiled graphs kept per function (see enable_fast_path)


def _loss_terms(*tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """`step_loss_terms` on `LossInputs.flatten()`'s tensors, as a plain tuple (what the
    compiled version takes and returns)."""
    return step_loss_terms(LossInputs.unflatten(tensors)).as_tuple()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(
            x.dtype
        ) * self.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary:
    """Rotary position tables, cached per (length, device). Plain tensors, not buffers:
    nothing to save and nothing for DDP to broadcast."""

    def __init__(self, head_dim: int, base: float) -> None:
        self.inv_freq = 1.0 / (
            base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        )
        self.cache: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (length, str(device))
        if key not in self.cache:
            angles = torch.outer(torch.arange(length, dtype=torch.float32), self.inv_freq)
            angles = torch.cat((angles, angles), dim=-1).to(device)
            self.cache[key] = (angles.cos(), angles.sin())
        return self.cache[key]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        head_dim = config.d_model // config.n_heads
        # QK-norm bounds the attention logits, which keeps the deep recursion stable.
        self.q_norm, self.k_norm = RMSNorm(head_dim), RMSNorm(head_dim)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            cos, sin = (t.to(q.dtype) for t in rope)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = int(config.mlp_ratio * config.d_model)
        self.gate_up = nn.Linear(config.d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn, self.mlp = Attention(config), SwiGLU(config)
        self.norm1, self.norm2 = RMSNorm(config.d_model), RMSNorm(config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, rope, mask)))
        return self.norm2(x + self.drop(self.mlp(x)))


class RefinerModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        D = config.d_model
        self.input_embed = nn.Embedding(config.vocab_size, D)
        self.canvas_embed = nn.Embedding(config.vocab_size, D)
        # Added to every input position, not prepended as a token: the layout is
        # position-aligned (input i, canvas i, target i), and an extra token would shift
        # that alignment and the local-attention windows. The table is a buffer trained
        # by refiner.model.puzzles.SparsePuzzleOptimizer; DDP must neither bucket nor broadcast it.
        self.puzzle_embed = (
            PuzzleEmbedding(config.puzzle_identities, D)
            if config.puzzle_embedding != "off"
            else None
        )
        if self.puzzle_embed is not None:
            self._ddp_params_and_buffers_to_ignore = ["puzzle_embed.weight"]
        self.pos_embed = nn.Embedding(config.seq_len, D) if config.positional == "learned" else None
        self.rotary = (
            Rotary(D // config.n_heads, config.rope_base) if config.positional == "rope" else None
        )
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.token_head = nn.Linear(D, config.vocab_size, bias=False)
        self.quality_head = nn.Linear(D, 1)
        self.halt_head = nn.Linear(D, 1)
        self._masks: dict[tuple[int, str], torch.Tensor] = {}  # local-attention masks (not buffers)
        self._compiled_reason: Callable | None = None  # set by enable_fast_path
        self._compiled_losses: Callable | None = None
        self.use_memory = config.memory_capacity > 0
        if self.use_memory:
            self.memory_out = nn.Linear(D, D, bias=False)
            self.memory_gate = nn.Parameter(torch.zeros(()))  # memory starts switched off
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=1.0)  # unit scale, like the normalised latent
        nn.init.zeros_(self.halt_head.weight)  # every position starts "not settled":
        nn.init.constant_(self.halt_head.bias, self.config.halt_bias_init)  # halt << 0

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ one step

    def embed_input(
        self, input_ids: torch.Tensor, puzzle_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, L, D]; with a puzzle embedding, `puzzle_ids` [B] (None: every row unknown)."""
        if input_ids.shape[1] > self.config.seq_len:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds the model's seq_len {self.config.seq_len}"
            )
        x = self.input_embed(input_ids)
        if self.pos_embed is not None:
            x = x + self.pos_embed.weight[: input_ids.shape[1]]
        if self.puzzle_embed is not None:
            if puzzle_ids is None:
                puzzle_ids = torch.zeros(input_ids.shape[0], dtype=torch.long, device=x.device)
            x = x + self.puzzle_embed(puzzle_ids.to(x.device)).to(x.dtype).unsqueeze(1)
        return x

    def initial_state(self, input_ids: torch.Tensor) -> RefinerState:
        """Empty canvas (all MASK, quality 0) and a zero latent."""
        B, L = input_ids.shape
        return RefinerState(
            canvas=torch.full_like(input_ids, MASK),
            canvas_quality=torch.zeros(B, L, device=input_ids.device),
            latent=torch.zeros(B, L, self.config.d_model, device=input_ids.device),
        )

    def step(
        self,
        x: torch.Tensor,
        canvas: torch.Tensor,
        latent: torch.Tensor,
        memory: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> StepOutput:
        """One refinement step. x, latent [B, L, D]; canvas [B, L] ids."""
        L = x.shape[1]
        inject = x + self.canvas_embed(canvas)
        summary = (x + latent).mean(1).detach()  # what the memory is searched (and written) with
        memory_similarity = None
        if self.use_memory:
            # An empty bank reads zeros; memory_out and the gate still join the graph, so
            # every parameter gets a gradient every step (DDP requirement).
            keys, values = memory if memory is not None else (summary[:0], summary[:0])
            read, memory_similarity = memory_read(summary, keys, values, self.config.memory_top_k)
            memory_term = self.memory_gate * self.memory_out(read.to(inject.dtype))
            inject = inject + memory_term.unsqueeze(1)
        rope = self.rotary.tables(L, x.device) if self.rotary is not None else None
        mask = self._local_mask(L, x.device)
        reason = self._reason if self._compiled_reason is None else self._compiled_reason
        z, logits, quality_logits, halt_logit = reason(latent, inject, rope, mask)
        return StepOutput(
            latent=z,
            logits=logits,
            quality_logits=quality_logits,
            halt_logit=halt_logit,
            summary=summary,
            memory_similarity=memory_similarity,
        )

    def _reason(
        self,
        latent: torch.Tensor,
        inject: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step's compute: latent cycles over the block stack, then the heads.
        Shapes depend only on [B, L, D], so this is what the fast path compiles (the
        memory read around it sees a growing bank and stays eager).
        Returns latent [B, L, D], logits [B, L, V], quality_logits [B, L], halt_logit [B]."""
        z = latent
        for _ in range(self.config.latent_cycles):
            z = z + inject
            for block in self.blocks:
                z = block(z, rope, mask)
        readout = z.detach()  # the heads read the latent but do not train it (module docs)
        settled = self.halt_head(readout).squeeze(-1)  # per position: "this position is final"
        # soft minimum over positions: halt once every position is settled
        halt_logit = -torch.logsumexp(-settled.float(), dim=-1)
        return z, self.token_head(z), self.quality_head(readout).squeeze(-1), halt_logit

    # ------------------------------------------------------------------ the fast path

    def enable_fast_path(self, mode: str | None = None) -> None:
        """Compile the step's compute (`_reason`) and the per-step loss terms with
        torch.compile (static shapes; `mode` e.g. "max-autotune-no-cudagraphs" on CUDA).
        Numerically the eager model up to kernel-order rounding. Every new batch shape
        compiles once: inference buckets its active rows (refiner.infer.inference) so that
        shrinking batches reuse a few shapes."""
        # grad on/off x training/eval x inference buckets: more graphs than the default 8
        dynamo_config = torch._dynamo.config
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, FAST_PATH_GRAPHS)
        self._compiled_reason = torch.compile(self._reason, mode=mode, dynamic=False)
        self._compiled_losses = torch.compile(_loss_terms, mode=mode, dynamic=False)

    @property
    def fast_path(self) -> bool:
        return self._compiled_reason is not None

    def loss_terms(self, inputs: LossInputs) -> StepLosses:
        """`step_loss_terms`, fused into one compiled kernel group on the fast path."""
        if self._compiled_losses is None:
            return step_loss_terms(inputs)
        return StepLosses(*self._compiled_losses(*inputs.flatten()))

    def _local_mask(self, length: int, device: torch.device) -> torch.Tensor | None:
        """With `attention_window` r, position i attends to |i - j| <= r only; on the grid
        layout, to row and column distances <= r each (None: no window)."""
        r = self.config.attention_window
        grid = self.config.attention_layout == "grid"
        if r is None or (not grid and r >= length - 1):
            return None
        key = (length, str(device))
        if key not in self._masks:
            pos = torch.arange(length, device=device)
            if grid:
                width = self.config.grid_width
                if width < 1:
                    raise ValueError(
                        "model.grid_width is unset: the grid layout takes it from the task"
                        " file (refiner.config.experiment.prepare_experiment sets it)"
                    )
                rows, cols = pos // width, pos % width
                near = (rows[:, None] - rows[None, :]).abs() <= r
                self._masks[key] = near & ((cols[:, None] - cols[None, :]).abs() <= r)
            else:
                self._masks[key] = (pos[:, None] - pos[None, :]).abs() <= r
        return self._masks[key]

    # ------------------------------------------------------------------ the unroll

    def forward(
        self,
        input_ids: torch.Tensor,
        steps: int,
        grad_steps: int | None = None,
        target: torch.Tensor | None = None,
        edit_fn: EditFn | None = None,
        memory: tuple[torch.Tensor, torch.Tensor] | None = None,
        truncate: TruncateFn | None = None,
        puzzle_ids: torch.Tensor | None = None,
        loss_options: LossOptions | None = None,
    ) -> Unroll:
        """Unroll `steps` refinement steps from an empty canvas.

        The gradient cut: `truncate` (the orchestrator's `apply_truncated_backprop`) is
        called after every step with the records so far and returns them with the cut
        applied; the next step starts from the latent of the last returned record, and
        the returned records are what the unroll keeps. A step whose record the cut
        detaches as soon as it is made (found by `steps_kept_by`) runs without autograd,
        which is the memory saving of truncation. `grad_steps=K` means
        `truncate=keep_last(K, steps)`. With neither, every step carries gradient.

        `edit_fn` chooses and applies each step's canvas edit (default: replace).
        With `target`, every record carries the step's loss terms (`loss_options`: the
        run's settings of the loss, refiner.model.losses.loss_options).
        `puzzle_ids` [B]: each row's puzzle identity (refiner.model.puzzles), with a puzzle
        embedding.
        """
        if truncate is not None and grad_steps is not None:
            raise ValueError("pass grad_steps or truncate, not both")
        if grad_steps is not None:
            truncate = keep_last(grad_steps, steps)
        autograd = [torch.is_grad_enabled()] * steps
        if truncate is not None and torch.is_grad_enabled():
            autograd = steps_kept_by(truncate, steps)
        x = self.embed_input(input_ids, puzzle_ids)  # [B, L, D]
        state = self.initial_state(input_ids)
        canvas, canvas_quality, latent = state.canvas, state.canvas_quality, state.latent
        records: list[StepRecord] = []
        for t in range(steps):
            with torch.set_grad_enabled(autograd[t]):
                out = self.step(x, canvas, latent, memory)
                with torch.no_grad():
                    proposal = out.logits.argmax(-1)  # [B, L]
                    proposal_quality = torch.sigmoid(out.quality_logits.float())  # [B, L]
                    if edit_fn is None:
                        canvas, canvas_quality, strategy = proposal, proposal_quality, "replace"
                    else:
                        canvas, canvas_quality, strategy = edit_fn(
                            t, canvas, canvas_quality, proposal, proposal_quality
                        )
                losses = None
                if target is not None:
                    losses = self.loss_terms(
                        LossInputs(
                            out.logits,
                            out.quality_logits,
                            out.halt_logit,
                            proposal,
                            canvas,
                            target,
                            loss_options or LossOptions(),
                        )
                    )
            records.append(
                StepRecord(
                    strategy=strategy,
                    latent=out.latent,
                    halt_prob=torch.sigmoid(out.halt_logit.detach().float()),
                    score=canvas_score(canvas_quality),
                    memory_similarity=out.memory_similarity,
                    losses=losses,
                )
            )
            if truncate is not None:
                records = truncate(records)
            latent = records[-1].latent
        return Unroll(
            steps=records,
            canvas=canvas,
            canvas_quality=canvas_quality,
            latent=latent.detach(),
            summary=(x + latent).mean(1).detach(),
        )
