"""The seed's usage, as users type it, and the package-level imports."""

from __future__ import annotations

import subprocess
import sys

import torch

from refiner import MemoryBank, OrchestrationConfig, RefinerModel, UnifiedRefinerOrchestrator
from refiner.config.sections import ModelConfig
from refiner.data.batches import batch_from_table
from refiner.data.tokenizers import ByteTokenizer
from refiner.tasks.sources import load_tasks
from refiner.train.optim import make_optimizer


def test_the_seed_usage_example_runs_as_written():
    tasks = load_tasks("text", count=8, seed=0)
    seq_len = max(len(row) for c in ("input", "target") for row in tasks.column(c).to_pylist())
    model_config = ModelConfig(
        seq_len=seq_len, d_model=32, n_heads=2, n_layers=1, latent_cycles=1, memory_capacity=16
    )
    torch.manual_seed(0)
    model = RefinerModel(model_config)
    tokenizer = ByteTokenizer()
    memory_bank = MemoryBank.from_config(model_config)
    batch = batch_from_table(tasks, seq_len)
    optimizer = make_optimizer(model, lr=1e-3)
    input_ids = batch["input"][:3]

    # -- as written in the seed
    config = OrchestrationConfig(
        max_steps_train=16,
        max_steps_infer=4,
        truncated_backprop=True,
        augmentation_count=300,
        adaptive_edit_selection=True,
    )
    orchestrator = UnifiedRefinerOrchestrator(model, tokenizer, memory_bank, config)
    orchestrator.train()
    loss_info = orchestrator.train_step(batch, optimizer, task_type="text")
    stats = orchestrator.get_training_stats()
    recent_norm = stats["gradient_norm"]["recent"]
    edit_performance = stats["edit_strategy_performance"]
    orchestrator.eval()
    result = orchestrator.inference(input_ids, return_traces=True, max_steps_override=6)
    # --

    assert loss_info.loss > 0 and len(loss_info.step_losses) == 16
    assert recent_norm == loss_info.grad_norm > 0
    assert sum(v["uses"] for v in edit_performance.values()) == 16
    assert all(key.startswith("text/") for key in edit_performance)
    for key in ("step_count", "training_mode", "gradient_norm", "loss", "memory_stats", "config"):
        assert key in stats, key
    assert stats["training_mode"] == "train" and stats["step_count"] == 1
    assert set(stats["gradient_norm"]) >= {"recent", "average", "history_length"}
    assert set(stats["loss"]) >= {"recent", "average", "history_length"}
    assert stats["memory_stats"]["capacity"] == 16
    assert len(result["steps_taken"]) == 3 and all(1 <= s <= 6 for s in result["steps_taken"])
    assert len(result["stopping_reason"]) == len(result["final_canvas_scores"]) == 3
    assert all(isinstance(text, str) for text in result["final_canvas"])  # decoded bytes
    assert len(result["traces"]) == max(result["steps_taken"])
    # inference() took the edit history of "text", the task type it was trained on
    assert orchestrator.task_type == "text"


def test_the_package_exports_the_seed_names_without_ray_or_mlflow():
    code = (
        "import sys\n"
        "from refiner import UnifiedRefinerOrchestrator, OrchestrationConfig, RefinerModel, "
        "MemoryBank\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow'})\n"
        "print(UnifiedRefinerOrchestrator.__name__, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "UnifiedRefinerOrchestrator []"
