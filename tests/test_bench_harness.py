"""The bench harness (bench/harness.py), the headline table built from results files
(bench/headline.py) and the GPU variants driver (bench/gpu_variants.py). Ray-free, fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_variants  # noqa: E402
import harness  # noqa: E402
import headline  # noqa: E402

from refiner.config.experiment import load_experiment_config  # noqa: E402


def test_results_file_carries_command_machine_date_and_headline(tmp_path):
    row = harness.Headline("thing vs other", 7, ">= 2x", "2.50x", order=15)
    path = harness.write_results(
        "thing",
        out=tmp_path / "thing.md",
        headline=[row],
        results={"ratio": 2.5},
        markdown="# Thing\n\n| a | b |\n",
        command="python bench/thing.py --fast",
    )
    assert path == tmp_path / "thing.json"
    record = harness.read_results(path)
    assert record.command == "python bench/thing.py --fast"
    assert "cores" in record.machine and "Python" in record.machine
    assert record.date.startswith("20") and record.results == {"ratio": 2.5}
    assert record.headline == [
        harness.Headline("thing vs other", 7, ">= 2x", "2.50x", 15, record.date)
    ]
    md = (tmp_path / "thing.md").read_text().splitlines()
    assert md[0] == "# Thing"
    assert md[2] == "- Command: `python bench/thing.py --fast`"
    assert md[3].startswith("- Machine: ") and md[4] == f"- Date: {record.date}"
    assert "| a | b |" in md


def test_smoke_runs_never_replace_the_committed_results():
    json_path, md_path = harness.results_paths("flops", None, smoke=True)
    assert harness.RESULTS not in json_path.parents and md_path is not None
    assert harness.results_paths("flops", None)[0] == harness.RESULTS / "flops.json"


def test_machine_description_names_cpu_cores_and_versions():
    facts = harness.machine()
    assert facts["cores"] >= 1 and facts["python"].count(".") == 2
    assert "torch" in facts and "numpy" in facts
    line = harness.describe_machine(facts)
    assert f"{facts['cores']} cores" in line and f"torch {facts['torch']}" in line


def test_timing_helpers():
    times = harness.interleaved({"a": lambda: sum(range(1000)), "b": lambda: None}, reps=3)
    assert set(times) == {"a", "b"} and all(len(v) == 3 for v in times.values())
    assert harness.paired_ratios([2.0, 6.0], [1.0, 2.0]) == [2.0, 3.0]
    assert harness.median_ratio([2.0, 6.0, 4.0], [1.0, 2.0, 4.0]) == 2.0
    assert harness.matmul_peak("cpu", n=64, repeats=2) > 0


def write_file(folder: Path, name: str, rows: list[dict], **extra) -> Path:
    record = {"name": name, "command": f"python bench/{name}.py", "machine": "m", "date": "d"}
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**record, "headline": rows, **extra}))
    return path


DOC = "# B\n\nintro\n\n{begin}\nold table\n{end}\n\nrest\n"


def test_headline_table_is_rebuilt_from_the_results_files_in_order(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    row = {"benchmark": "b", "issue": 2, "target": "t", "result": "r"}
    write_file(results, "late", [{**row, "benchmark": "late", "order": 30}])
    write_file(results, "early", [{**row, "benchmark": "early", "order": 10}])
    write_file(results, "mid", [{**row, "benchmark": "mid (#2), here", "order": 20}])
    write_file(results, "none", [])  # a run with no headline row adds none
    doc = tmp_path / "B.md"
    doc.write_text(DOC.format(begin=headline.BEGIN, end=headline.END))
    args = ["--results", str(results), "--doc", str(doc)]
    assert headline.main([*args, "--check"]) == 1
    assert headline.main(args) == 0
    text = doc.read_text()
    assert "old table" not in text and text.endswith("rest\n")
    table = text.split(headline.BEGIN)[1].split(headline.END)[0].strip().splitlines()
    assert table[2:] == [
        "| early (#2) | t | r |",
        "| mid (#2), here | t | r |",
        "| late (#2) | t | r |",
    ]
    assert headline.main([*args, "--check"]) == 0
    write_file(results, "late", [{**row, "benchmark": "late", "result": "new", "order": 30}])
    assert headline.main([*args, "--check"]) == 1


def test_hand_kept_rows_are_marked_and_their_reasons_listed(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    row = {"benchmark": "b", "issue": 2, "target": "t", "result": "r", "order": 10}
    write_file(results, "run", [row])
    why = "a composite of two runs"
    write_file(results, "kept", [{**row, "order": 20}], results={"kept_by_hand": why})
    doc = tmp_path / "B.md"
    doc.write_text(DOC.format(begin=headline.BEGIN, end=headline.END))
    assert headline.main(["--results", str(results), "--doc", str(doc)]) == 0
    table = doc.read_text().split(headline.BEGIN)[1].split(headline.END)[0]
    assert "| b (#2) | t | r |" in table and f"| b (#2) {headline.MARK} | t | r |" in table
    assert f"- `bench/results/kept.json`: {why}" in table
    write_file(results, "kept", [{**row, "order": 20}], results={"kept_by_hand": ""})
    with pytest.raises(ValueError, match="kept.json"):
        headline.hand_kept(results)


def test_bad_results_file_is_refused_naming_file_and_key(tmp_path, capsys):
    row = {"benchmark": "b", "issue": 2, "target": "t", "result": "r", "order": 1, "unit": "s"}
    bad = write_file(tmp_path, "bad", [row])
    doc = tmp_path / "B.md"
    doc.write_text(DOC.format(begin=headline.BEGIN, end=headline.END))
    before = doc.read_text()
    assert headline.main(["--results", str(tmp_path), "--doc", str(doc)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'unit'" in err
    assert doc.read_text() == before  # nothing written
    write_file(tmp_path, "bad", [], extra_key=1)
    with pytest.raises(ValueError, match="unknown key 'extra_key'"):
        headline.collect(tmp_path)


def test_benchmarks_md_headline_table_matches_the_committed_results_files():
    assert headline.main(["--check"]) == 0


def test_every_gpu_session_file_parses_into_runnable_commands():
    folder = ROOT / "bench" / "results" / "gpu_h200"
    sessions = sorted(folder.glob("session*.yaml"))
    assert len(sessions) == 7
    round2 = sorted(folder.glob("round2_*.yaml"))  # issue 30's two prepared commands
    assert [p.stem for p in round2] == ["round2_accuracy", "round2_speed"]
    for path in sessions + round2:
        spec = gpu_variants.load_variants(path)
        for v in spec.variants:
            argv = gpu_variants.command(spec, v, Path("/tmp/o"), True, "cpu", 10)
            assert (ROOT / argv[1]).is_file() and argv[-2:] != ["--device"]
            if "--maze-recipe" in argv or "--with-maze" in argv:  # every --set is valid
                sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
                flag = "--maze-recipe"
                recipe = argv[argv.index(flag) + 1] if flag in argv else "maze_hard_gpu.yaml"
                load_experiment_config(ROOT / "jobs" / "configs" / recipe, sets)
    s5 = gpu_variants.load_variants(ROOT / "bench" / "results" / "gpu_h200" / "session5.yaml")
    t16 = next(v for v in s5.variants if v.name == "T16_K1")
    argv = gpu_variants.command(s5, t16, Path("/tmp/o"), False, None, 10)
    assert argv[-4:] == ["--updates", "67", "--set", "training.steps=67"]
    s4 = gpu_variants.load_variants(ROOT / "bench" / "results" / "gpu_h200" / "session4.yaml")
    loops0 = next(v for v in s4.variants if v.name == "c2_d64_loops0")
    assert 'task.options={"loops":0}' in loops0.args


def test_unknown_key_in_a_variants_file_is_refused_naming_file_and_key(tmp_path, capsys):
    path = tmp_path / "v.yaml"
    path.write_text("limit_s: 5\nvariants:\n  a: --x 1\n  b: {args: --x 2, update: 3}\n")
    with pytest.raises(
        gpu_variants.VariantsError, match=r"v\.yaml: variants\.b: unknown key 'update'"
    ):
        gpu_variants.load_variants(path)
    path.write_text("limits: 5\nvariants:\n  a: --x 1\n")
    assert gpu_variants.main([str(path), "--logs", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'limits'" in err
    assert not (tmp_path / "logs").exists()  # refused before anything ran


def test_variants_driver_runs_side_by_side_with_a_time_limit_and_logs(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text(
        "import sys, time\nprint('args', sys.argv[1:], flush=True)\n"
        "time.sleep(float(sys.argv[sys.argv.index('--sleep') + 1]))\nprint('done')\n"
    )
    path = tmp_path / "v.yaml"
    path.write_text(
        f"script: {script}\nlimit_s: 20\nargs: --common 1\nsmoke_args: --tiny\nupdates: 100\n"
        "schedule_follows_updates: true\nlog_prefix: run_\n"
        "shared:\n  q: &q --set 'a={\"b\":0}'\n"
        "variants:\n  quick: [--sleep 0, *q]\n  slow: {args: --sleep 60, limit_s: 1, updates: 50}\n"
    )
    logs = tmp_path / "logs"
    assert gpu_variants.main([str(path), "--logs", str(logs), "--smoke", "--scale", "10"]) == 1
    quick = (logs / "run_quick.log").read_text()
    assert "'--common', '1', '--sleep', '0', '--set', 'a={\"b\":0}', '--tiny'" in quick
    assert "'--updates', '10', '--set', 'training.steps=10'" in quick and "done" in quick
    slow = (logs / "run_slow.log").read_text()
    assert "'--updates', '5'" in slow and "done" not in slow
    summary = harness.read_results(logs / "variants.json").results
    status = {r["name"]: r["status"] for r in summary["runs"]}
    assert status == {"quick": "ok", "slow": "stopped at the limit"}
    assert (logs / "machine.txt").read_text().strip()
