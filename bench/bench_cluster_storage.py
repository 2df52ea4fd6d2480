"""The default job with cloud-style stores vs. local ones, side by side in one run.

A: checkpoints in a local folder, MLflow in a SQLite file (what every run so far used).
B: checkpoints on an S3 server (``--storage s3://...`` through AWS_ENDPOINT_URL) and
   MLflow over HTTP (``mlflow server``, artifacts proxied to the same S3 server): the
   stores of docs/cluster.md, started locally by tests/rehearsal/servers.py.

Both are ``python jobs/train.py`` (the default config, 2 Ray Train workers on a local
Ray), run alternately (A B A B ... for --rounds): throughput is rank 0's reported
samples/s (median over the run's reports), wall time is the job's own. Checkpoint upload
time: the cloud run's newest checkpoint folder written to each store with
``upload_checkpoint`` (the function rank 0 hands Ray Train to persist a checkpoint), times
the checkpoints the run wrote (its validations: one per checkpoint).

    python bench/bench_cluster_storage.py [--steps 100] [--checkpoint-every 25] [--rounds 1]

Writes bench/results/cluster_storage.json (bench/harness.py).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Headline, parser, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "rehearsal"), str(ROOT / "tests")]

from servers import rehearsal_servers  # noqa: E402

VALIDATION_METRIC = "val_acc_infer"  # logged by rank 0 at every checkpoint


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
    checkpoints = len(client.get_metric_history(run.info.run_id, VALIDATION_METRIC))
    job_wall = float(re.search(r"wall time: (\d+) s", proc.stdout).group(1))
    return {
        "samples_per_s": statistics.median(rates),
        "wall_s": job_wall,
        "process_s": wall,
        "checkpoints": checkpoints,
        "checkpoint": run.data.tags["refiner.checkpoint"],
    }


def upload_seconds(local_checkpoint: str, target: str, reps: int = 3) -> float:
    """Median time to write one checkpoint folder to ``target`` (a path or s3:// URI) the
    way a run does (``upload_checkpoint``: every file, then meta.json)."""
    from refiner.checkpoints.storage import filesystem, upload_checkpoint

    fs, root = filesystem(target)
    times = []
    for i in range(reps):
        started = time.perf_counter()
        upload_checkpoint(local_checkpoint, fs, f"{root}/copy-{i}", retry_s=0)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def local_copy_of(checkpoint: str, into: Path) -> str:
    """A local folder holding ``checkpoint`` (downloaded when it is an s3:// URI)."""
    import pyarrow.fs as pafs

    from refiner.checkpoints.storage import filesystem

    if "://" not in checkpoint:
        return checkpoint
    fs, path = filesystem(checkpoint)
    into.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(into), fs, pafs.LocalFileSystem())
    return str(into)


def main() -> None:
    p = parser(__doc__, "cluster_storage")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=25)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-stores-"))
    base = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base.pop("RAY_ADDRESS", None)
    base.pop("MLFLOW_TRACKING_URI", None)
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
        os.environ.update(s3.client_env())  # pyarrow's S3 filesystem in this process
        newest = local_copy_of(results["cloud"][-1]["checkpoint"], tmp / "newest")
        local_upload = upload_seconds(newest, str(tmp / "copies"))
        s3_upload = upload_seconds(newest, "s3://bench/copies")
    size = sum(f.stat().st_size for f in Path(newest).rglob("*") if f.is_file())
    n_ckpt = statistics.median(r["checkpoints"] for r in results["cloud"])
    rate = {k: statistics.median(r["samples_per_s"] for r in v) for k, v in results.items()}
    wall = {k: statistics.median(r["wall_s"] for r in v) for k, v in results.items()}
    throughput_ratio = rate["cloud"] / rate["local"]
    wall_ratio = wall["cloud"] / wall["local"]
    upload = n_ckpt * s3_upload
    share = upload / wall["cloud"]
    lines = [
        f"default job, {args.steps} updates, a checkpoint every {args.checkpoint_every}, "
        f"{args.rounds} round(s) of local then cloud stores",
        *(
            f"  {kind:5s}: {rate[kind]:7.1f} samples/s (median report), wall {wall[kind]:.0f} s"
            for kind in ("local", "cloud")
        ),
        f"throughput ratio cloud/local: {throughput_ratio:.3f}",
        f"wall-time ratio cloud/local:  {wall_ratio:.3f}",
        f"checkpoint: {size / 1e6:.2f} MB; one upload to S3 {s3_upload:.3f} s, to local disk "
        f"{local_upload:.3f} s; {n_ckpt:g} checkpoints = {upload:.2f} s to S3, "
        f"{100 * share:.1f}% of the cloud run's wall time",
    ]
    print("\n".join(lines))
    write_results(
        "cluster_storage",
        out=args.out,
        headline=[
            Headline(
                "default job, S3 checkpoints + HTTP tracking vs local files",
                27,
                "report (ratio in one run)",
                f"samples/s {throughput_ratio:.2f}x, wall {wall_ratio:.2f}x; a "
                f"{size / 1e6:.1f} MB checkpoint uploads in {s3_upload:.2f} s "
                f"({100 * share:.1f}% of the wall time for {n_ckpt:g})",
                order=115,
            )
        ],
        results={
            "steps": args.steps,
            "checkpoint_every": args.checkpoint_every,
            "rounds": results,
            "samples_per_s": rate,
            "wall_s": wall,
            "throughput_ratio": throughput_ratio,
            "wall_ratio": wall_ratio,
            "checkpoint_mb": size / 1e6,
            "upload_s": {"s3": s3_upload, "local": local_upload},
            "checkpoints": n_ckpt,
            "upload_share_of_wall": share,
            "summary": lines,
        },
    )


if __name__ == "__main__":
    main()
