"""train_step under real 2-process DDP (gloo, CPU): one forward per backward, truncation,
edits and memory inside the unroll, no find_unused_parameters; ranks stay identical."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp
from refiner_fixtures import gloo_group, parity_batch, tiny_config, tiny_orchestrator

from refiner.train.optim import make_optimizer

STEPS = 3


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    with gloo_group(rank, world_size, init_file):
        config = tiny_config(max_steps_train=4, backprop_truncate_steps=2, memory_writes_per_step=8)
        o = tiny_orchestrator(config, seed=0)  # same initial weights on both ranks
        initial = {k: v.clone() for k, v in o.core.state_dict().items()}
        o.model = torch.nn.parallel.DistributedDataParallel(o.model)  # as prepare_model does
        optimizer = make_optimizer(o.model, lr=1e-2)
        metrics = [
            o.train_step(parity_batch(8, seed=100 * rank + i), optimizer) for i in range(STEPS)
        ]
        result = {
            "weights": o.core.state_dict(),
            "initial": initial,
            "skipped": [m.skipped for m in metrics],
            "grad_norms": [m.grad_norm for m in metrics],
            "inference_steps": o.inference(parity_batch(4)["input"])["steps_taken"],
        }
        torch.save(result, f"{out_dir}/rank{rank}.pt")


def test_two_rank_ddp_train_step_keeps_ranks_identical(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["skipped"] == r1["skipped"] == [False] * STEPS
    assert r0["grad_norms"] == r1["grad_norms"]  # all-reduced gradients: the same norm on both
    for key, value in r0["weights"].items():
        assert torch.equal(value, r1["weights"][key]), key
    changed = [k for k, v in r0["weights"].items() if not torch.equal(v, r0["initial"][k])]
    assert "input_embed.weight" in changed and "halt_head.bias" in changed
    assert len(r0["inference_steps"]) == 4
