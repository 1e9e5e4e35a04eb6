"""The command line: cuts, demo and bench-cache on small sizes, and its error path."""
import json

from reframe_core.cli import main


def test_cuts_lists_candidates_with_flops_share(capsys):
    assert main(["cuts", "--model", "unet", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "auto picks level:0" in out and "up1 1x32x64x64" in out
    assert main(["cuts", "--model", "extranet", "--size", "64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["auto"] == "level:0"
    assert {c["name"] for c in data["candidates"]} >= {"level:0", "level:1", "lowlevelGated"}


def test_demo_prints_a_row_per_policy(capsys):
    assert main(["demo", "--synthetic", "--frames", "4", "--size", "32", "--policies", "always;every:2"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("always", "every:2"))]
    assert len(rows) == 2
    assert rows[0].split()[2] == "4"  # 'always' refreshed all 4 frames


def test_bad_policy_is_one_clear_error(capsys):
    assert main(["demo", "--synthetic", "--policies", "sometimes"]) == 2
    err = capsys.readouterr().err
    assert "unknown policy 'sometimes'" in err and "every:N" in err


def test_bench_cache_writes_json(tmp_path, capsys):
    target = tmp_path / "speed.json"
    assert main(["bench-cache", "--size", "32", "--repeats", "3", "--json", str(target)]) == 0
    report = json.loads(target.read_text())
    assert report["hit_ms"] > 0 and report["full_ms"] > 0 and "delta:0.1" in report["overhead_ms"]


def test_bench_cache_takes_a_display_size_and_rejects_a_bad_one(tmp_path, capsys):
    target = tmp_path / "speed.json"
    assert main(["bench-cache", "--model", "ss", "--size", "48x32", "--repeats", "1", "--json", str(target)]) == 0
    report = json.loads(target.read_text())
    assert report["size"] == "48x32" and report["weights"] == "ss_x2.pt"
    assert main(["bench-cache", "--size", "wide"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
