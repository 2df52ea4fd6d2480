"""cluster.yaml: Ray's own schema and validator (offline), then the project's rules.

``prepare_config`` only merges the AWS provider's defaults.yaml from disk; the part of
``ray up`` that talks to AWS (``bootstrap_config``: key pairs, security groups, AMIs)
is not called. A socket guard proves that nothing here reaches the network.
"""

from __future__ import annotations

import copy
import re
import socket
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import tomllib
import torch
import yaml
from packaging.specifiers import SpecifierSet
from ray._private.runtime_env.packaging import create_package
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
PUBLIC_CIDRS = {"0.0.0.0/0", "::/0"}
UPLOAD_LIMIT_BYTES = 5 * 2**20  # the working dir a job uploads; today ~0.6 MiB


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _all_commands(config: dict[str, Any]) -> list[str]:
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    return [cmd for key in keys for cmd in config.get(key, [])]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"cluster config validation tried to open a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_ray_validator_accepts_it_offline(raw, no_network):
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    assert prepared["head_node_type"] == "head_cpu"
    assert "boto3" not in sys.modules  # no AWS client was built


def test_ray_validator_catches_a_misspelt_key(raw):
    broken = copy.deepcopy(raw)
    broken["max_worker"] = broken.pop("max_workers")  # proves the schema really runs
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(broken))


def test_image_matches_the_pinned_ray_and_python(raw):
    image = raw["docker"]["image"]
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-gpu", image)
    assert match, f"{image}: expected rayproject/ray:<version>-py<xy>-gpu (ray-ml is discontinued)"
    version, py_major, py_minor = match.groups()
    assert version == ray.__version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ray_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("ray["))
    assert version in SpecifierSet(ray_pin.split("]", 1)[1])
    assert f"{py_major}.{py_minor}" in SpecifierSet(pyproject["project"]["requires-python"])
    assert "head_image" not in raw["docker"] and "worker_image" not in raw["docker"]


def test_setup_installs_this_project_and_cuda_torch(raw):
    mounts = raw["file_mounts"]
    project_dir = next(remote for remote, local in mounts.items() if local == ".")
    commands = raw["setup_commands"]  # every node, head included
    assert any(re.search(rf"pip install .*(-e )?{re.escape(project_dir)}\b", c) for c in commands)
    torch_pins = [m for c in commands for m in re.findall(r"torch==([\w.]+)", c)]
    assert torch_pins == [torch.__version__.split("+")[0]]  # the version CI tests, CUDA build
    assert "--index-url https://download.pytorch.org/whl/cpu" not in " ".join(commands)


def test_uploads_respect_the_ignore_files(raw):
    assert {".gitignore", ".rayignore"} <= set(raw["rsync_filter"])
    assert (ROOT / ".rayignore").is_file()
    assert "**/.git" in raw["rsync_exclude"]


def test_node_types_cpu_head_and_gpu_workers(raw):
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != raw["head_node_type"]]
    spot_single = [
        t
        for t in workers
        if t["resources"]["GPU"] == 1
        and t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    ]
    multi = [t for t in workers if t["resources"]["GPU"] > 1]
    assert spot_single and multi


def test_no_port_is_opened_to_the_world(raw):
    rules = list(raw["provider"].get("security_group", {}).get("IpPermissions", []))
    for node_type in raw["available_node_types"].values():
        assert "NetworkInterfaces" not in node_type["node_config"]  # no public-IP tricks
    for rule in rules:
        cidrs = {r["CidrIp"] for r in rule.get("IpRanges", [])}
        cidrs |= {r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])}
        assert not cidrs & PUBLIC_CIDRS, f"security group rule open to the world: {rule}"
        assert not {8265, 5000} & set(range(rule["FromPort"], rule["ToPort"] + 1))
    for option in raw["docker"].get("run_options", []):
        assert not re.match(r"(-p|--publish)\b", option), "docker must not publish ports"


def test_dashboard_binds_to_loopback(raw):
    head_start = next(c for c in raw["head_start_ray_commands"] if "ray start --head" in c)
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in head_start
    assert "RAY_AUTH_MODE=token" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(raw["worker_start_ray_commands"])


def test_mlflow_server_on_the_head(raw):
    commands = " ".join(raw["head_setup_commands"] + raw["head_start_ray_commands"])
    assert "mlflow server" in commands
    assert re.search(r"--backend-store-uri (sqlite:////|postgresql://)", commands)
    assert re.search(r"--artifacts-destination s3://", commands)
    assert "--serve-artifacts" in commands
    # Workers (rank 0 of a GPU run) must reach it; the world must not (no rule opens 5000,
    # checked above). Jobs on the head find it through the exported tracking URI.
    assert re.search(r"export MLFLOW_TRACKING_URI=http://.+?:5000;.*ray start --head", commands)
    assert "mlflow server" not in " ".join(raw["worker_start_ray_commands"])


def test_no_command_stops_other_clusters_or_opens_ports(raw):
    for command in _all_commands(raw):
        assert "--dashboard-host=0.0.0.0" not in command
        assert "ray-client-server-port" not in command  # Ray Client stays off


def test_working_dir_upload_is_small():
    """What `ray job submit --working-dir .` would upload, built by Ray's own packager."""
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "working_dir.zip"
        create_package(str(ROOT), package, include_gitignore=True, logger=None)
        names = zipfile.ZipFile(package).namelist()
        size = package.stat().st_size
    print(f"working-dir upload: {size / 2**20:.2f} MiB, {len(names)} files")
    assert size < UPLOAD_LIMIT_BYTES, f"working-dir upload is {size / 2**20:.1f} MiB"
    top = {name.split("/", 1)[0] for name in names}
    assert not top & {".venv", ".git", "outputs", "mlartifacts", "mlruns", ".hypothesis"}
    assert "mlflow.db" not in names
    assert any(name.startswith("platform/refiner/") for name in names)
    assert "jobs/train.py" in names
