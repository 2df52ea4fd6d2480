"""The default job with cloud-style stores vs. local ones, side by side in one run.

A: checkpoints in a local folder, MLflow in a SQLite file (what every run so far used).
B: checkpoints on an S3 server (``--storage s3://...`` through AWS_ENDPOINT_URL) and
   MLflow over HTTP (``mlflow server``, artifacts proxied to the same S3 server): the
   stores of docs/cluster.md, started locally by tests/rehearsal/servers.py.

Both are ``python jobs/train.py`` (the default config, 2 Ray Train workers on a local
Ray), run alternately (A B A B ... for --rounds): throughput is rank 0's reported
samples/s (median over the run's reports), wall time is the job's own. Checkpoint upload
time: the run's newest checkpoint folder copied with pyarrow's filesystem (what Ray Train
uses to persist a checkpoint) to each store, times the checkpoints the run wrote.

    python bench/bench_cluster_storage.py [--steps 300] [--checkpoint-every 100] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "rehearsal"), str(ROOT / "tests")]

from servers import rehearsal_servers  # noqa: E402


def train(args, env: dict[str, str], storage: str, tracking: str, name: str) -> dict:
    command = [
        sys.executable, str(ROOT / "jobs" / "train.py"), "--run-name", name,
        "--storage", storage, "--tracking-uri", tracking, "--steps", str(args.steps),
        "--set", f"training.checkpoint_every={args.checkpoint_every}",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    from mlflow import MlflowClient

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("refiner")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`mlflow.runName` = '{name}'")
    rates = [m.value for m in client.get_metric_history(run.info.run_id, "samples_per_s")]
    job_wall = float(re.search(r"wall time: (\d+) s", proc.stdout).group(1))
    return {
        "samples_per_s": statistics.median(rates),
        "wall_s": job_wall,
        "process_s": wall,
        "checkpoint": run.data.tags["refiner.checkpoint"],
    }


def upload_seconds(local_checkpoint: str, target: str, env: dict[str, str], reps: int = 3) -> float:
    """Median time to copy one checkpoint folder to ``target`` (a path or s3:// URI)."""
    import pyarrow.fs as pafs

    os.environ.update(env)
    fs, root = (
        pafs.FileSystem.from_uri(target) if "://" in target else (pafs.LocalFileSystem(), target)
    )
    fs.create_dir(root, recursive=True)
    times = []
    for i in range(reps):
        fs.create_dir(f"{root}/copy-{i}", recursive=True)
        started = time.perf_counter()
        pafs.copy_files(local_checkpoint, f"{root}/copy-{i}", pafs.LocalFileSystem(), fs)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-stores-"))
    base = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base.pop("RAY_ADDRESS", None)
    with rehearsal_servers(bucket="bench") as (s3, mlflow_server):
        cloud_env = {**base, **s3.client_env()}
        results: dict[str, list[dict]] = {"local": [], "cloud": []}
        for r in range(args.rounds):
            results["local"].append(
                train(args, base, str(tmp / "ckpt"), f"sqlite:///{tmp / 'm.db'}", f"local-{r}")
            )
            print(f"round {r} local: {results['local'][-1]}", flush=True)
            results["cloud"].append(
                train(args, cloud_env, "s3://bench/ckpt", mlflow_server.uri, f"cloud-{r}")
            )
            print(f"round {r} cloud: {results['cloud'][-1]}", flush=True)
        newest = results["local"][-1]["checkpoint"]
        local_copy = upload_seconds(newest, str(tmp / "copies"), {})
        s3_copy = upload_seconds(newest, "s3://bench/copies", s3.client_env())
    size = sum(f.stat().st_size for f in Path(newest).iterdir())
    n_ckpt = -(-args.steps // args.checkpoint_every)
    rate = {k: statistics.median(r["samples_per_s"] for r in v) for k, v in results.items()}
    wall = {k: statistics.median(r["wall_s"] for r in v) for k, v in results.items()}
    print(f"default job, {args.steps} updates, a checkpoint every {args.checkpoint_every}, "
          f"{args.rounds} round(s) of local then cloud stores")  # fmt: skip
    for kind in ("local", "cloud"):
        print(f"  {kind:5s}: {rate[kind]:7.1f} samples/s (median report), wall {wall[kind]:.0f} s")
    print(f"throughput ratio cloud/local: {rate['cloud'] / rate['local']:.3f}")
    print(f"wall-time ratio cloud/local:  {wall['cloud'] / wall['local']:.3f}")
    upload = n_ckpt * s3_copy
    print(
        f"checkpoint: {size / 1e6:.2f} MB; one copy to S3 {s3_copy:.3f} s, to local disk "
        f"{local_copy:.3f} s; {n_ckpt} checkpoints = {upload:.2f} s to S3, "
        f"{100 * upload / wall['cloud']:.1f}% of the cloud run's wall time"
    )


if __name__ == "__main__":
    main()
