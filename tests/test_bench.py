"""The bench on a real 6-frame EEVEE sequence: JSON fields, exactness of `always`, plots, maps, errors."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from reframe_core.evaluation import bench
from reframe_core.workloads import get_workload
from reframe_core.cli import main
from reframe_core.errors import SettingsError
from reframe_core.policies import split_policy_list

POLICIES = "always,every:2,delta:0.25,motion:trans=0.1,rot=4,every:2@reproject"


@pytest.fixture(scope="module")
def report(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--workload", "ss,fe", "--scenes", str(tiny_dataset), "--policies", POLICIES,
                 "--warmup", "1", "--repeats", "2", "--json", str(out / "r.json"), "--plot", str(out / "pareto.png"), "--quiet"])
    assert code == 0
    return json.loads((out / "r.json").read_text()), out


def test_json_has_machine_settings_and_one_result_per_workload(report):
    data, _ = report
    assert data["schema"] == bench.SCHEMA
    assert data["command"].startswith("reframe-blender bench --workload ss,fe")
    for key in ("date", "cpu", "cpu_count", "torch", "torch_threads", "python", "cuda_available", "placement"):
        assert key in data["machine"], key
    assert data["settings"]["device"] == "cpu" and data["settings"]["precision"] == "mixed"  # render's default
    assert data["machine"]["placement"].startswith("cpu mixed (")  # and what it means on this CPU
    assert [r["workload"] for r in data["results"]] == ["ss", "fe"]
    ss, fe = data["results"]
    assert ss["frames"] == [3, 4, 5, 6, 7, 8] and ss["network_frames"] == 6
    assert ss["display_size"] == [48, 48] and ss["input_size"] == [24, 24]
    assert fe["network_frames"] == 3  # k=2: frames 4, 6, 8 are extrapolated
    for result in data["results"]:
        assert result["cut"]["flops_removed_share"] > 0.2
        assert result["uncached"]["time_ms"]["median"] > 0
        assert 0 < result["uncached"]["vs_truth"]["flip_mean"] < 0.5
        assert [p["policy"] for p in result["policies"]] == split_policy_list(POLICIES)


def test_policy_rows_carry_speed_and_quality_figures(report):
    data, _ = report
    for result in data["results"]:
        for p in result["policies"]:
            for key in ("speedup", "speedup_median", "speedup_total", "speedup_step", "hit_rate", "flops_removed",
                        "policy_overhead_ms", "policy_overhead_share"):
                assert isinstance(p[key], float) and np.isfinite(p[key]), (p["policy"], key)
            for key in ("median", "p10", "p90", "mean"):
                assert p["time_ms"][key] > 0
            flips = p["flip_vs_uncached"]
            assert len(flips["per_frame"]) == result["network_frames"] == len(p["decisions"])
            assert flips["max"] >= flips["p95"] >= 0 and flips["max"] >= flips["mean"]
            assert 0 < p["vs_truth"]["flip_mean"] < 0.5 and p["vs_truth"]["psnr_mean"] > 10
            assert 0 <= p["flops_removed"] <= p["flops_removed_per_hit"] < 1  # exact values: the clocked test below


def test_always_refresh_is_exactly_the_uncached_network(report):
    data, _ = report
    for result in data["results"]:
        always = next(p for p in result["policies"] if p["policy"] == "always")
        assert always["hit_rate"] == 0 and always["flops_removed"] == 0
        assert always["flip_vs_uncached"] == {"mean": 0.0, "p95": 0.0, "max": 0.0,
                                              "per_frame": [0.0] * result["network_frames"]}
        assert always["vs_truth"]["flip_mean"] == result["uncached"]["vs_truth"]["flip_mean"]


def test_paper_peers_are_marked_and_every_2_hits_every_other_frame(report):
    data, _ = report
    ss, fe = data["results"]
    peers = {p["policy"]: p["paper_peer"] for p in ss["policies"]}
    assert peers == {"always": False, "every:2": True, "delta:0.25": True, "motion:trans=0.1,rot=4": False,
                     "every:2@reproject": False}
    assert not next(p for p in fe["policies"] if p["policy"] == "delta:0.25")["paper_peer"]  # FE's is 0.2
    every = next(p for p in ss["policies"] if p["policy"] == "every:2")
    assert every["hit_rate"] == 0.5 and every["refreshes"] == 3 and every["time_ms"]["n"] == 12  # 2 repeats
    assert [d["refresh"] for d in every["decisions"]] == [True, False] * 3
    # The same schedule with the cached features reprojected on each hit: its own curve, the same decisions.
    moved = next(p for p in ss["policies"] if p["policy"] == "every:2@reproject")
    assert moved["family"] == "every@reproject" and [d["refresh"] for d in moved["decisions"]] == [True, False] * 3
    assert {d["reason"] for d in moved["decisions"] if not d["refresh"]} == {"hit (reprojected)"}


def test_summary_plot_and_error_maps(report):
    data, out = report
    assert set(data["summary"]) == {"ss", "fe"}
    assert data["summary"]["ss"]["every:2"]["scenes"] == 1  # (the verdict itself: test_target_verdict_...)
    ss = data["results"][0]
    # every:2 refreshes frames 3, 5, 7 and every policy refreshes the first: the forced ones are among those.
    assert ss["forced_refreshes"][0] == 3 and set(ss["forced_refreshes"]) <= {3, 5, 7}
    ceilings = {p["policy"]: p["speedup_ceiling"] for p in ss["policies"]}
    assert ceilings["always"] is None and ceilings["every:2"] > 0  # always never hits: no hit time to go by
    with Image.open(out / "pareto.png") as image:
        assert image.size[0] > 600
    every = data["results"][0]["policies"][1]
    assert every["worst_frames"] and all("png" in w for w in every["worst_frames"])
    with Image.open(every["worst_frames"][0]["png"]) as image:
        assert image.size == (3 * 48, 48)  # uncached | cached | error map
    always = data["results"][0]["policies"][0]
    assert all("png" not in w for w in always["worst_frames"])  # nothing to show where FLIP is 0


def test_policy_lists_keep_commas_of_arguments():
    assert split_policy_list("every:2, delta:0.2,input=1,motion:trans=0.1,rot=4+max-age:8") == [
        "every:2", "delta:0.2,input=1", "motion:trans=0.1,rot=4+max-age:8"]
    assert bench.policy_family("motion:trans=0.1,rot=4+max-age:8") == "motion+max-age"
    assert bench.bench_entry("screen:px=24,holes=0.1@reproject") == ("screen:px=24,holes=0.1", True)
    with pytest.raises(SettingsError, match="optionally followed by @reproject"):
        bench.bench_entry("every:2@warp")
    ss, fe = get_workload("ss"), get_workload("fe")
    assert bench.is_paper_peer("delta:0.2", fe) and not bench.is_paper_peer("delta:0.2", ss)


@pytest.mark.parametrize("argv, message", [
    (["--workload", "sr"], "unknown workload 'sr'"),
    (["--policies", "every:2,sometimes"], "unknown policy 'sometimes'"),
    (["--precision", "fp16"], "--precision fp16 needs --device cuda"),
])
def test_bad_requests_fail_before_any_work(tmp_path, capsys, argv, message):
    assert main(["bench", "--scenes", str(tmp_path / "nothing"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_that_is_not_a_dataset_is_named(tmp_path, capsys):
    assert main(["bench", "--scenes", str(tmp_path / "nothing"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing") in err and "reframe-blender dataset" in err


def test_frame_sequences_check_their_lengths(tiny_dataset):
    seq = bench.dataset_sequence(tiny_dataset, get_workload("ss"))
    with pytest.raises(ValueError, match="must match"):
        bench.FrameSequence("x", seq.frames, seq.inputs, seq.truth[:2])
    with pytest.raises(ValueError, match="lacks frames"):
        bench.dataset_sequence(tiny_dataset, get_workload("ss"), frames=[1, 2])


def test_reduced_precision_channels_last_path_keeps_always_exact(tiny_dataset, tmp_path):
    """The --device/--precision/--channels-last path (bf16 on CPU here; fp16 needs CUDA)."""
    out = tmp_path / "r.json"
    assert main(["bench", "--workload", "ss", "--scenes", str(tiny_dataset), "--policies", "always,every:2",
                 "--precision", "bf16", "--channels-last", "--warmup", "1", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["placement"] == "cpu bf16 channels-last"
    always, every = data["results"][0]["policies"]
    assert always["flip_vs_uncached"]["max"] == 0.0
    assert every["hit_rate"] == 0.5 and 0 < every["vs_truth"]["flip_mean"] < 0.5


# --- the figures from hand-worked numbers ----------------------------------------------------------------

def _scene(workload, rows):
    """A result of one scene as measure_sequence returns it, reduced to what summarize reads."""
    return {"workload": workload, "scene": "hand", "policies": [
        {"policy": spec, "family": bench.policy_family(spec), "paper_peer": False, "speedup": speedup,
         "hit_rate": hits, "flip_vs_uncached": {"per_frame": flips}} for spec, (speedup, hits, flips) in rows.items()]}


def test_target_verdict_and_means_over_scenes_from_hand_worked_numbers():
    # Target: mean speedup >= 2, mean FLIP over all frames of all scenes <= 0.02, no frame above 0.05.
    scene_a = {"met": (2.4, 0.8, [0.01, 0.02]),
               "too_slow": (2.2, 0.8, [0.01, 0.02]),
               "one_bad_frame": (2.5, 0.9, [0.0, 0.0, 0.0]),
               "blurry_on_average": (3.0, 0.9, [0.03, 0.03]),
               "just_at_the_limits": (2.0, 0.5, [0.02, 0.02])}
    scene_b = {"met": (1.8, 0.6, [0.01, 0.03]),            # mean 2.1x, FLIP mean 0.0175, max 0.03
               "too_slow": (1.6, 0.6, [0.01, 0.03]),       # mean 1.9x
               "one_bad_frame": (2.5, 0.9, [0.0, 0.0, 0.06]),  # FLIP mean 0.01 but one frame at 0.06
               "blurry_on_average": (3.0, 0.9, [0.02, 0.04]),  # FLIP mean 0.03, max 0.04
               "just_at_the_limits": (2.0, 0.5, [0.02, 0.02])}
    summary = bench.summarize([_scene("ss", scene_a), _scene("ss", scene_b), _scene("fe", {"met": (1.0, 0.0, [0.0])})])
    ss = summary["ss"]
    assert {spec: row["meets_target"] for spec, row in ss.items()} == {
        "met": True, "too_slow": False, "one_bad_frame": False, "blurry_on_average": False, "just_at_the_limits": True}
    assert summary["fe"]["met"]["meets_target"] is False  # workloads are judged apart: fe's 1.0x is its own
    assert ss["met"]["mean_speedup"] == pytest.approx(2.1)
    assert ss["met"]["mean_hit_rate"] == pytest.approx(0.7)
    assert ss["met"]["mean_flip_vs_uncached"] == pytest.approx(0.0175)
    assert ss["met"]["max_flip_vs_uncached"] == pytest.approx(0.03)
    assert ss["one_bad_frame"]["mean_flip_vs_uncached"] == pytest.approx(0.01)
    assert ss["met"]["scenes"] == 2 and summary["fe"]["met"]["scenes"] == 1


def test_speedups_from_hand_worked_times():
    """every:3 over six frames: refresh on the 1st and 4th. Uncached ms 10, 10, 22, 10, 10, 10 (a one-off
    12 ms stall on frame 3 that the medians must ignore); cached: refreshes 10, 10, hits 4, 16, 4, 4."""
    got = bench.speedups([10, 10, 22, 10, 10, 10], [10, 4, 16, 10, 4, 4], [True, False, False, True, False, False])
    assert got["speedup"] == pytest.approx(10 / ((2 * 10 + 4 * 4) / 6))  # medians mixed 2:4 -> 10 / 6
    assert got["speedup_median"] == pytest.approx(10 / 7)  # plain median of 4, 4, 4, 10, 10, 16
    assert got["speedup_total"] == pytest.approx(72 / 48)
    # Mostly hits: the plain median reads the hit time alone, the mixed one does not.
    mostly_hits = bench.speedups([8] * 5, [8, 2, 2, 2, 2], [True, False, False, False, False])
    assert mostly_hits["speedup_median"] == pytest.approx(4.0)
    assert mostly_hits["speedup"] == pytest.approx(8 / ((8 + 4 * 2) / 5))


def test_refresh_ceiling_from_hand_worked_times():
    """Frames 1-4. every:2 refreshes 1 and 3, delta refreshes 1 and 4: only frame 1 is refreshed by both, so
    no policy can refresh less than once. delta's own times: refreshes 12 and 10 ms (median 11), hits 2 and 6 ms
    (median 4); uncached 10 ms. Its speedup mixes them 2:2 -> 10 / 7.5; refreshing on frame 1 alone -> 10 /
    ((11 + 3 * 4) / 4) = 10 / 5.75."""
    every = ([1, 2, 3, 4], ["full", "hit", "full", "hit"])
    delta = ([1, 2, 3, 4], ["full", "hit", "hit", "full"])
    assert bench.forced_refreshes([every, delta]) == [1]
    assert bench.forced_refreshes([every, ([1, 2, 3, 4], ["full", "hit", "full", "full"])]) == [1, 3]
    delta_ms = [12, 2, 6, 10]
    assert bench.speedups([10] * 4, delta_ms, delta[1])["speedup"] == pytest.approx(10 / 7.5)
    refreshes, hits = [12, 10], [2, 6]
    assert bench.refresh_ceiling([10] * 4, refreshes, hits, frames=4, forced=1) == pytest.approx(10 / 5.75)
    # Repeats add timed frames; the counts are the first pass's.
    assert bench.refresh_ceiling([10] * 8, refreshes * 2, hits * 2, frames=4, forced=1) == pytest.approx(10 / 5.75)
    assert bench.refresh_ceiling([10] * 4, [10] * 4, [], frames=4, forced=1) is None  # never hit: no hit time

    # Over scenes: the paper's delta, its mean speedup and mean ceiling, and the gain between them.
    def scene(speedup, ceiling):
        result = _scene("ss", {"delta:0.25": (speedup, 0.5, [0.01]), "every:2": (1.2, 0.5, [0.01])})
        result["policies"][0]["paper_peer"] = True
        result["policies"][0]["speedup_ceiling"] = ceiling
        result["policies"][1]["speedup_ceiling"] = 5.0  # not the paper's delta: not in the ceiling line
        return result

    summary = bench.summarize([scene(1.5, 2.0), scene(2.5, 3.0)])
    assert summary["ss"]["delta:0.25"]["mean_speedup_ceiling"] == pytest.approx(2.5)
    ceilings = bench.summarize_ceilings(summary)
    assert ceilings == {"ss": {"policy": "delta:0.25", "mean_speedup": pytest.approx(2.0), "ceiling": pytest.approx(2.5),
                               "gain": pytest.approx(0.25)}}
    assert "delta:0.25 (paper) refreshing only where every policy did (first frames, cuts) 2.50x, +25.0% over its 2.00x" \
        in bench.format_summary(summary, ceilings)
    never_hit = scene(1.5, None)
    assert bench.summarize_ceilings(bench.summarize([scene(1.5, 2.0), never_hit])) == {}


def test_the_lead_over_a_policy_whatever_a_hit_costs_from_hand_worked_times():
    """Two 4-frame scenes, uncached 10 ms, refresh 10 ms, hit 4 ms; frame 1 is the only forced refresh. On A the
    policy refreshes once (at its ceiling), on B three times. With hits at s times 4 ms: ceiling 40 / (10 + 12 s)
    on both, the policy 40 / (10 + 12 s) on A and 40 / (30 + 4 s) on B, so the lead is 2 / (1 + (10 + 12 s) /
    (30 + 4 s)) - 1: 50 % with free hits (its largest), 2 / (1 + 22 / 34) - 1 at today's cost, which is the
    ceiling's own gain."""
    def scene(refreshes):
        result = _scene("ss", {"delta:0.25": (1.0, 0.5, [0.01])})
        result["policies"][0].update(paper_peer=True, network_frames=4, refreshes=refreshes, partial_refreshes=0,
                                     time_ms={"refresh_median": 10.0, "hit_median": 4.0, "partial_median": None})
        result["policies"][0]["speedup"] = 40 / (refreshes * 10 + (4 - refreshes) * 4)
        result["policies"][0]["speedup_ceiling"] = 40 / (10 + 3 * 4)
        result.update(forced_refreshes=[1], uncached={"time_ms": {"median": 10.0}})
        return result

    results = [scene(1), scene(3)]
    summary = bench.summarize(results)
    bound = bench.lead_at_any_hit_cost(results, "ss", "delta:0.25")
    assert bound == {"gain": pytest.approx(0.5), "hit_scale": 0.0}
    ceilings = bench.summarize_ceilings(summary, results)["ss"]
    assert ceilings["gain"] == pytest.approx(2 / (1 + 22 / 34) - 1) and ceilings["any_hit_cost"] == bound
    assert "whatever a hit costs (a cheaper hit speeds up its hits too): at most +50.0%, with hits at 0.00x its" \
        in bench.format_summary(summary, {"ss": ceilings})
    # A policy at its ceiling on every scene cannot be led, whatever the hits cost.
    assert bench.lead_at_any_hit_cost([scene(1), scene(1)], "ss", "delta:0.25")["gain"] == pytest.approx(0.0)
    assert bench.lead_at_any_hit_cost(results, "ss", "every:2") is None


class _HandCountedNet(nn.Module):
    """FLOPs per pixel (multiply-adds): deep 3x3 conv 3 -> 3 = 81, 1x1 head 6 -> 3 = 18: a hit removes 81/99."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.head = nn.Conv2d(6, 3, 1, bias=False)

    def reframe_deep(self, x):
        return (self.deep(x),)

    def reframe_shallow(self, x, deep):
        return F.interpolate(self.head(torch.cat([x, deep[0]], 1)), scale_factor=2, mode="nearest")

    def forward(self, x):
        return self.reframe_shallow(x, self.reframe_deep(x))


def test_flops_removed_per_hit_matches_a_hand_count():
    from reframe_core import cache_model

    cached = cache_model(_HandCountedNet().eval(), (torch.rand(1, 3, 16, 16),), cut="manual", policy="every:3")
    assert cached.plan.removed_share == pytest.approx(9 / 11)
    for _ in range(6):
        cached(torch.rand(1, 3, 16, 16))
    assert cached.stats.flops_removed == pytest.approx(4 / 6 * 9 / 11)


def test_fe_bench_gives_a_relighting_network_what_blender_renders(tiny_dataset, tiny_cheap, tmp_path, capsys):
    """With the scenes' cheap passes (bench --cheap-root) an extrapolated frame is its cheap pass and a rendered one
    carries its colour, as in Blender; without them the relighting network shows its ablation."""
    from dataclasses import replace

    from reframe_core.frames.dataset import Dataset
    from reframe_core.networks.extranet import head_at_zero
    from reframe_core.workloads.extrapolation import Extrapolator

    fe = get_workload("fe")
    model, _ = fe.load(None, 1.0)

    def uncached_images(seq):
        seen = {}
        bench.measure_sequence(fe, seq, model, ["every:2"], warmup=1, worst=0,
                               on_images=lambda frame, images: seen.__setitem__(frame, images["uncached"]))
        return seen

    relit = uncached_images(bench.dataset_sequence(tiny_dataset, fe, 1.0, cheap_root=tiny_cheap))
    bare = uncached_images(bench.dataset_sequence(tiny_dataset, fe, 1.0))
    # Independent expectations: the extrapolator stepped by hand on what Blender renders, and the ablation.
    data, cheap = Dataset.open(tiny_dataset), Dataset.open(tiny_cheap)
    for net, as_blender, got in ((model, True, relit), (head_at_zero(model), False, bare)):
        runner, previous = Extrapolator(net, 2), None
        for index, number in enumerate(data.frames(1.0)):
            full = data.load(number)
            hints = full.hints(previous)
            given = full
            if as_blender:
                given = replace(full, cheap_color=cheap.load(number).color) if index % 2 == 0 else cheap.load(number)
            shown = runner.step(given, hints)
            if shown.network_ran:
                np.testing.assert_array_equal(got[number], shown.image)
            previous = full
    assert sorted(relit) == sorted(bare) == [4, 6, 8]
    assert not np.array_equal(relit[4], bare[4])
    # The command: --cheap-root DIR reads DIR/NAME; without it, it says the network is not relit.
    for extra in ([], ["--cheap-root", str(tiny_cheap.parent)]):
        assert main(["bench", "--workload", "fe", "--scenes", str(tiny_dataset), "--policies", "every:2", "--warmup", "1",
                     "--worst", "0", "--json", str(tmp_path / "fe.json"), "--quiet", *extra]) == 0
        said = capsys.readouterr().err
        assert ("bench fe: this FE network relights" in said) == (not extra), extra
    assert main(["bench", "--workload", "fe", "--scenes", str(tiny_dataset), "--cheap-root", str(tmp_path),
                 "--policies", "every:2", "--quiet"]) == 2
    assert f"{tmp_path / 'slow_pan'}" in capsys.readouterr().err
