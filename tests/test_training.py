"""Training (deterministic, resumable), weights files and their errors, and the quality evaluation."""
import json
import re
import shutil

import pytest
import torch

from reframe_core.cli import main
from reframe_core.networks import get_network
from reframe_core.weights import WeightsError, load_network, save_weights

pytestmark = pytest.mark.blender


def _train(data, out, steps, *extra):
    return main(["train", "--workload", "ss", "--data", str(data), "--out", str(out), "--steps", str(steps),
                 "--batch", "2", "--sequence", "3", "--crop", "32", "--quiet", *extra])


def test_training_is_deterministic_and_resumes(tiny_dataset, tmp_path):
    straight = tmp_path / "new" / "folder" / "straight.pt"  # --out's folder is made when missing
    assert _train(tiny_dataset, straight, 4) == 0
    resumed = tmp_path / "resumed.pt"
    assert _train(tiny_dataset, resumed, 4, "--stop-after", "2") == 0  # an interrupted run
    assert not resumed.exists() and resumed.with_suffix(".ckpt").exists()
    assert _train(tiny_dataset, resumed, 4) == 0  # the same command again continues from step 2
    a, _ = load_network(straight, "ss")
    b, payload = load_network(resumed, "ss")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    log = [json.loads(line) for line in resumed.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    assert payload["card"]["train_frames"] == 6 and payload["card"]["workload"] == "ss"


def test_weights_errors_name_the_file_and_architecture(tmp_path):
    with pytest.raises(WeightsError, match=r"missing\.pt not found \(expected architecture 'ss'\)"):
        load_network(tmp_path / "missing.pt", "ss")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="corrupt.pt.*damaged"):
        load_network(corrupt, "ss")
    other = tmp_path / "unet.pt"
    save_weights(other, "unet", {}, get_network("unet").build(), {})
    with pytest.raises(WeightsError, match="holds weights for 'unet', expected architecture 'ss'"):
        load_network(other, "ss")
    bad_shape = tmp_path / "bad.pt"
    save_weights(bad_shape, "ss", {"width": 24}, get_network("ss").build(width=16), {})
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_network(bad_shape, "ss")


def test_eval_reports_network_and_bicubic(tiny_dataset, tmp_path, capsys):
    weights = tmp_path / "w.pt"
    assert _train(tiny_dataset, weights, 1) == 0
    report_path = tmp_path / "q.json"
    assert main(["eval", "--data", str(tiny_dataset), "--weights", str(weights), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())["reports"][0]
    assert report["frames"] == 6
    for method in ("network", "bicubic", "temporal"):  # temporal: the non-neural accumulating upscaler
        assert 0 < report[method]["flip_mean"] < 1 and report[method]["psnr_mean"] > 5
    assert report["flip_reduction_vs_temporal"] == pytest.approx(1 - report["network"]["flip_mean"] / report["temporal"]["flip_mean"])
    assert main(["eval", "--data", str(tiny_dataset), "--weights", str(weights), "--policy", "every:2"]) == 0


def test_eval_reset_history_scores_every_frame_as_a_first_frame(tiny_dataset, tmp_path, capsys):
    """--reset-history: the network's mean FLIP is the mean of one-frame evaluations (each a fresh start),
    which the fed-back run is not."""
    weights = tmp_path / "w.pt"
    assert _train(tiny_dataset, weights, 3) == 0

    def network_flip(*extra):
        path = tmp_path / "q.json"
        assert main(["eval", "--data", str(tiny_dataset), "--weights", str(weights), "--json", str(path), *extra]) == 0
        return json.loads(path.read_text())["reports"][0]["network"]["flip_mean"]

    alone = [network_flip("--frames", f"{n}-{n}") for n in range(3, 9)]
    capsys.readouterr()
    reset = network_flip("--reset-history")
    assert "history reset on every frame" in capsys.readouterr().out
    assert reset == pytest.approx(sum(alone) / len(alone), rel=1e-6)
    assert network_flip() != pytest.approx(reset, rel=1e-4)
    assert main(["eval", "--workload", "fe", "--data", str(tiny_dataset), "--reset-history"]) == 2
    assert "--reset-history is for --workload ss" in capsys.readouterr().err


def test_eval_writes_side_by_side_crops_of_the_native_render(tiny_dataset, tmp_path):
    import numpy as np
    from PIL import Image

    from reframe_core.evaluation.metrics import tonemap_ldr
    from reframe_core.frames.dataset import Dataset

    report_path = tmp_path / "q.json"
    assert main(["eval", "--data", str(tiny_dataset), "--crops", str(tmp_path / "crops"), "--json", str(report_path)]) == 0
    crops = json.loads(report_path.read_text())["reports"][0]["crops"]
    assert [c["frame"] for c in crops] == [6, 8]  # the middle and the last of frames 3-8
    for crop in crops:
        strip = np.asarray(Image.open(crop["png"]).convert("RGB"))
        side, zoom = crop["side"], 3
        # bicubic | temporal | network | native, labels above
        assert side == 48 and strip.shape == (side * zoom + 16, 4 * side * zoom + 12, 3)
        # The last tile is the native render at that place, each pixel drawn zoom x zoom.
        native = Dataset.open(tiny_dataset).load(crop["frame"], 1.0).color
        expected = (np.clip(tonemap_ldr(native[crop["top"]:crop["top"] + side, crop["left"]:crop["left"] + side]), 0, 1) * 255 + 0.5).astype(np.uint8)
        tile = strip[16:, 3 * (side * zoom + 4):][::zoom, ::zoom]
        assert np.array_equal(tile, expected)


def test_fe_training_writes_extranet_weights_and_eval_runs(tiny_dataset, tmp_path, capsys):
    weights = tmp_path / "fe.pt"
    assert main(["train", "--workload", "fe", "--data", str(tiny_dataset), "--out", str(weights), "--steps", "2",
                 "--batch", "2", "--crop", "32", "--quiet"]) == 0
    model, payload = load_network(weights, "extranet")
    assert payload["config"] == {"n_channels": 19, "inputs": "shading", "residual": "holes"} and payload["card"]["workload"] == "fe"
    assert payload["card"]["fe_inputs"] == "shading" and payload["card"]["fe_residual"] == "holes"
    report_path = tmp_path / "fe.json"
    assert main(["eval", "--workload", "fe", "--data", str(tiny_dataset), "--weights", str(weights), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())["reports"][0]
    assert report["extrapolated_frames"] == 3 and report["reprojection"]["flip_mean"] > 0
    # The non-learned peer (demodulated reprojection, push-pull in the holes), the network's own ablation (its
    # head at zero) and FLIP inside the holes.
    holes = report["holes"]
    assert 0 < report["fill"]["flip_mean"] < 1 and 0 <= holes["share_mean"] <= 1
    assert 0 < report["head_at_zero"]["flip_mean"] < 1
    assert report["flip_reduction_vs_head_at_zero"] == 1 - report["network"]["flip_mean"] / report["head_at_zero"]["flip_mean"]
    if holes["pixels"]:
        assert all(0 <= holes[f"flip_{m}"] <= 1 for m in ("network", "reprojection", "fill", "head_at_zero"))
    # A network whose head is at zero is its own ablation: the two rows agree exactly.
    from reframe_core.networks.extranet import head_at_zero
    from reframe_core.workloads.extrapolation import evaluate_extrapolation

    same = evaluate_extrapolation(head_at_zero(model), str(tiny_dataset))
    assert same["network"] == same["head_at_zero"] and same["flip_reduction_vs_head_at_zero"] == 0


def test_eval_scores_against_a_reference_of_the_same_frames(tiny_dataset, tiny_cheap, tmp_path, capsys):
    """eval --reference: every output, and the native render itself, scored against another render of the same
    frames (a higher-sample one in practice). The native render scored against itself is FLIP 0 and leaves every
    other figure as without --reference; against other colours its row is flip(reference, native) frame by frame."""
    import dataclasses

    import numpy as np

    from reframe_core.evaluation.metrics import flip
    from reframe_core.frames.buffers import write_buffers_exr
    from reframe_core.frames.dataset import Dataset

    def run(workload, *extra):
        out = tmp_path / f"{workload}{len(list(tmp_path.iterdir()))}.json"
        cheap = ["--cheap-data", str(tiny_cheap)] if workload == "fe" else []  # the shipped FE relights with it
        assert main(["eval", "--workload", workload, "--data", str(tiny_dataset), "--json", str(out), *cheap, *extra]) == 0
        return json.loads(out.read_text())["reports"][0]

    brighter = tmp_path / "brighter"  # the same frames and cameras, other colours
    shutil.copytree(tiny_dataset, brighter)
    data = Dataset.open(brighter)
    for frame in data.frames(1.0):
        buffers = data.load(frame, 1.0)
        write_buffers_exr(brighter / f"scale_1/frame_{frame:04d}.exr", dataclasses.replace(buffers, color=buffers.color * 1.3))
    native = Dataset.open(tiny_dataset)
    for workload, scored, rows in (("ss", [3, 4, 5, 6, 7, 8], ("network", "bicubic", "temporal")),
                                   ("fe", [4, 6, 8], ("network", "head_at_zero", "reprojection", "fill", "relight",
                                                      "gated_relight"))):
        plain, itself = run(workload), run(workload, "--reference", str(tiny_dataset))
        assert itself["native"]["flip_mean"] == 0 and itself["reference"] == str(tiny_dataset)
        for name in rows:
            assert itself[name]["flip_mean"] == plain[name]["flip_mean"], (workload, name)
        other = run(workload, "--reference", str(brighter))
        expected = np.mean([flip(data.load(f, 1.0).color, native.load(f, 1.0).color).mean for f in scored])
        assert other["native"]["flip_mean"] == pytest.approx(expected, rel=1e-6)
        assert other["network"]["flip_mean"] != plain["network"]["flip_mean"]
    capsys.readouterr()
    assert run("ss", "--reference", str(brighter))  # the table says what it was scored against
    assert f"slow_pan: scored against {brighter} (1 samples); the native render itself: FLIP" in capsys.readouterr().out
    # A reference lacking frames, or of another view, is refused with what to do.
    metadata = json.loads((brighter / "metadata.json").read_text())
    del metadata["frames"]["scale_1"]["8"]
    (brighter / "metadata.json").write_text(json.dumps(metadata))
    assert main(["eval", "--data", str(tiny_dataset), "--reference", str(brighter)]) == 2
    said = capsys.readouterr().err
    assert "lacks frames 8..8" in said and "--frames 8-8 --scales 1 --samples N" in said
    metadata["frames"]["scale_1"]["8"] = json.loads((tiny_dataset / "metadata.json").read_text())["frames"]["scale_1"]["8"]
    metadata["frames"]["scale_1"]["5"]["camera"]["world_matrix"][0][3] += 1.0
    (brighter / "metadata.json").write_text(json.dumps(metadata))
    assert main(["eval", "--data", str(tiny_dataset), "--reference", str(brighter)]) == 2
    assert "frame 5 is not the view of" in capsys.readouterr().err
    assert main(["eval", "--data", f"{tiny_dataset},{tiny_dataset}", "--reference", str(brighter)]) == 2
    assert "--reference names 1 datasets for 2 in --data" in capsys.readouterr().err


def test_fe_eval_takes_extrapolated_frames_from_the_cheap_pass(tiny_dataset, tiny_cheap, tmp_path):
    cheap = tiny_cheap
    assert json.loads((cheap / "metadata.json").read_text())["settings"]["cheap"] is True
    report_path = tmp_path / "fe.json"
    assert main(["eval", "--workload", "fe", "--data", str(tiny_dataset), "--cheap-data", str(cheap),
                 "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())["reports"][0]
    assert report["gbuffers"] == "cheap pass" and report["extrapolated_frames"] == 3
    assert 0 < report["network"]["flip_mean"] < 1
    partial = tmp_path / "partial"
    assert main(["dataset", "--scene", "slow_pan", "--frames", "3-5", "--scales", "1", "--resolution", "48",
                 "--samples", "1", "--cheap", "--quiet", "--out", str(partial)]) == 0
    from reframe_core.workloads.extrapolation import evaluate_extrapolation as evaluate_fe
    from reframe_core.weights import load_network, shipped

    with pytest.raises(ValueError, match="lacks frames 6..8"):
        evaluate_fe(load_network(shipped("fe_extranet"), "extranet")[0], str(tiny_dataset), 2, str(partial))


def test_relighting_fe_trains_on_cheap_passes_and_its_ablation_and_peers_are_scored(tiny_dataset, tiny_cheap, tmp_path,
                                                                                    capsys):
    from dataclasses import replace

    from reframe_core.frames.dataset import Dataset
    from reframe_core.networks.extranet import head_at_zero
    from reframe_core.workloads.extrapolation import NOT_RELIT, Extrapolator, evaluate_extrapolation

    cheap = tiny_cheap
    weights = tmp_path / "relight.pt"
    common = ["train", "--workload", "fe", "--fe-residual", "relight", "--data", str(tiny_dataset), "--out", str(weights),
              "--steps", "2", "--batch", "2", "--crop", "32", "--quiet"]
    assert main(common) == 2  # no cheap pass given: nothing to relight with
    assert "needs the cheap pass of every --data folder: 1 --data, 0 --cheap-data" in capsys.readouterr().err
    assert main(common + ["--cheap-data", f"{cheap},{cheap}"]) == 2
    assert "1 --data, 2 --cheap-data" in capsys.readouterr().err
    assert not weights.exists()
    assert main(common + ["--cheap-data", str(cheap)]) == 0
    model, payload = load_network(weights, "extranet")
    assert payload["config"] == {"n_channels": 25, "inputs": "shading", "residual": "relight"}
    assert payload["card"]["cheap_data"] == [str(cheap)]
    # Its eval needs the cheap passes too, and says so; with them it scores the two relighting peers.
    assert main(["eval", "--workload", "fe", "--data", str(tiny_dataset), "--weights", str(weights)]) == 2
    assert "relights with the cheap pass's colour" in capsys.readouterr().err
    report = evaluate_extrapolation(model, str(tiny_dataset), 2, str(cheap))
    assert 0 < report["relight"]["flip_mean"] < 1 and 0 < report["gated_relight"]["flip_mean"] < 1
    assert report["flip_reduction_vs_gated_relight"] == 1 - report["network"]["flip_mean"] / report["gated_relight"]["flip_mean"]
    same = evaluate_extrapolation(head_at_zero(model), str(tiny_dataset), 2, str(cheap))
    assert same["network"] == same["head_at_zero"]  # at zero it is demodulated reprojection, the usual ablation
    # A rendered frame that came without its cheap pass (a frame source that cannot render it): the next frame
    # is not relit but shows the ablation, demodulated reprojection, and its reason says why.
    import copy

    import numpy as np

    relit_everywhere = copy.deepcopy(model)  # the head's choice at its maximum: the relit frame at every pixel
    with torch.no_grad():
        relit_everywhere.outc.weight.zero_()
        relit_everywhere.outc.bias.fill_(5.0)
    data = Dataset.open(tiny_dataset)
    first, second = data.load(3, 1.0), Dataset.open(cheap).load(4, 1.0)
    runs = {}
    for name, net, given in (("bare", relit_everywhere, first), ("ablation", head_at_zero(model), first),
                             ("relit", relit_everywhere, replace(first, cheap_color=Dataset.open(cheap).load(3, 1.0).color))):
        runner = Extrapolator(net, 2)
        runner.step(given, first.hints(None))
        runs[name] = runner.step(second, second.hints(first))
    assert np.array_equal(runs["bare"].image, runs["ablation"].image)
    assert runs["bare"].reason == "uncached" + NOT_RELIT and runs["relit"].reason == "uncached"
    assert not np.array_equal(runs["relit"].image, runs["ablation"].image)
    # An extrapolated frame handed with the full render's colour and its cheap pass beside it: the network sees the
    # cheap pass, never the colour it is to predict.
    runner = Extrapolator(relit_everywhere, 2)
    runner.step(replace(first, cheap_color=Dataset.open(cheap).load(3, 1.0).color), first.hints(None))
    leaky = replace(second, color=data.load(4, 1.0).color, cheap_color=second.color)
    assert np.array_equal(runner.step(leaky, second.hints(first)).image, runs["relit"].image)


def test_tonemap_loss_matches_the_metric_tonemap_and_has_finite_gradients():
    import numpy as np

    from reframe_core.evaluation.metrics import tonemap_ldr
    from reframe_core.training import image_loss, tonemap_torch

    linear = torch.tensor([0.0, 1e-4, 0.02, 0.5, 3.0, 40.0]).reshape(1, 3, 1, 2)
    expected = tonemap_ldr(linear[0].permute(1, 2, 0).numpy())
    assert np.allclose(tonemap_torch(linear)[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    out = torch.zeros(1, 3, 4, 4, requires_grad=True)
    image_loss(out, torch.rand(1, 3, 4, 4), "tonemap").backward()
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0


def _history(previous, batch, t, size, previous_depth):
    """The history of frame t as inference builds it (Supersampler.step), and frame t's depth at display size."""
    from reframe_core.frames.warp import backward_warp
    from reframe_core.networks.supersampling import upsample_unjittered
    from reframe_core.workloads.supersampling import bicubic_upscale, checked_history

    color, jitter, depth = batch["color"][t], batch["jitter"][t], batch["depth"][t]
    fresh, here = bicubic_upscale(color, size, jitter), upsample_unjittered(depth, jitter, size, mode="nearest")
    if previous is None:
        return fresh, here
    flow = batch["motion"][t]
    return checked_history(backward_warp(previous, flow, mode="bicubic"), flow, fresh, jitter, depth, previous_depth), here


def test_cache_in_the_loop_trains_on_what_a_cache_hit_computes():
    """Training's simulated hits (--cache-in-loop) give exactly the cached network's hit output: the slow
    features of the last computed frame, the fast branch and resolve of the current one."""
    from reframe_core.caching.cache import cache_model
    from reframe_core.training import image_loss
    from reframe_core.workloads import get_workload

    torch.manual_seed(0)
    net = get_network("ss").build(width=8, design="v3")
    with torch.no_grad():  # a random init barely uses the slow features: make them count
        net.slow[1].weight *= 30
    frames, size = 3, (16, 16)
    batch = {"color": torch.rand(frames, 1, 3, 8, 8), "gbuffer": torch.rand(frames, 1, 7, 8, 8),
             "jitter": torch.rand(frames, 1, 2) - 0.5, "motion": torch.randn(frames, 1, 2, *size),
             "target": torch.rand(frames, 1, 3, *size), "depth": torch.rand(frames, 1, 1, 8, 8) + 1,
             "reuse": torch.tensor([False, True, True])}
    trained = get_workload("ss").training_loss(net, batch, "cpu")

    cached = cache_model(net, (batch["color"][0], batch["gbuffer"][0], batch["jitter"][0], torch.rand(1, 3, *size)), cut="slow")
    expected, previous, depth = 0.0, None, None
    for t in range(frames):
        color, jitter = batch["color"][t], batch["jitter"][t]
        history, depth = _history(previous, batch, t, size, depth)
        previous = cached(color, batch["gbuffer"][t], jitter, history, refresh=t == 0)
        expected += float(image_loss(previous, batch["target"][t])) / frames
    assert float(trained) == pytest.approx(expected, rel=1e-6)
    uncached = get_workload("ss").training_loss(net, {k: v for k, v in batch.items() if k != "reuse"}, "cpu")
    assert float(uncached) != pytest.approx(expected, rel=1e-3)  # the reuse is what makes them equal
    assert net.slow.__class__.__name__ == "Sequential"  # the slow branch is put back


def test_history_burn_in_ages_the_history_without_training_on_it():
    """--history-burn-in: the first frames of a window only produce the history the trained frames start from;
    they add nothing to the loss and no gradient flows back through them."""
    from reframe_core.training import image_loss
    from reframe_core.workloads import get_workload

    torch.manual_seed(0)
    net = get_network("ss").build(width=8, design="v2", correction="bounded")
    frames, burn_in, size = 5, 3, (16, 16)
    batch = {"color": torch.rand(frames, 1, 3, 8, 8), "gbuffer": torch.rand(frames, 1, 7, 8, 8),
             "jitter": torch.rand(frames, 1, 2) - 0.5, "motion": torch.randn(frames, 1, 2, *size),
             "target": torch.rand(frames, 1, 3, *size), "depth": torch.rand(frames, 1, 1, 8, 8) + 1, "burn_in": burn_in}
    trained = get_workload("ss").training_loss(net, batch, "cpu")
    trained.backward()
    got = [p.grad.clone() for p in net.parameters()]

    net.zero_grad()
    previous, expected, depth = None, 0.0, None
    for t in range(frames):  # the same chain by hand: aged history, detached, then the trained frames
        color, jitter = batch["color"][t], batch["jitter"][t]
        history, depth = _history(previous, batch, t, size, depth)
        previous = net(color, batch["gbuffer"][t], jitter, history)
        if t < burn_in:
            previous = previous.detach()
        else:
            expected = expected + image_loss(previous, batch["target"][t]) / (frames - burn_in)
    expected.backward()
    assert float(trained) == pytest.approx(float(expected), rel=1e-6)
    for a, b in zip(got, (p.grad for p in net.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_history_burn_in_needs_runs_long_enough(tiny_dataset, tmp_path, capsys):
    assert _train(tiny_dataset, tmp_path / "w.pt", 1, "--history-burn-in", "4") == 2  # 4 + 3 frames > the 6 captured
    err = capsys.readouterr().err
    assert "no run of 7 frames" in err and f"{tiny_dataset} (6)" in err and not (tmp_path / "w.pt").exists()


def test_a_dataset_too_short_for_the_sequence_is_named_not_dropped(tiny_dataset, tmp_path, capsys):
    # A copy of the dataset that keeps only frames 3-5: a 3-frame run beside the original's 6-frame one.
    short = tmp_path / "short"
    shutil.copytree(tiny_dataset, short)
    meta = json.loads((short / "metadata.json").read_text())
    for frames in meta["frames"].values():
        for frame in [f for f in frames if int(f) > 5]:
            del frames[frame]
    (short / "metadata.json").write_text(json.dumps(meta))
    data = f"{tiny_dataset},{short}"
    assert _train(data, tmp_path / "w.pt", 1, "--sequence", "4") == 2  # only the original has 4 frames in a row
    err = capsys.readouterr().err
    assert "no run of 4 frames" in err and f"{short} (3)" in err and str(tiny_dataset) + " (" not in err
    assert not (tmp_path / "w.pt").exists()
    assert _train(data, tmp_path / "w.pt", 1, "--sequence", "3") == 0  # both have 3


def test_correction_is_refused_where_the_design_has_none(tiny_dataset, tmp_path, capsys):
    # v1 and split add their correction freely: asking them for another must not train a network silently without it.
    out = tmp_path / "v1.pt"
    assert _train(tiny_dataset, out, 1, "--design", "v1", "--correction", "range") == 2
    assert "--correction range needs --design v2, v3, v4" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".ckpt").exists()
    assert _train(tiny_dataset, out, 1, "--design", "v1") == 0  # without the option, each design takes its own
    assert "correction" not in load_network(out, "ss")[1]["config"]
    ranged = tmp_path / "v2.pt"
    assert _train(tiny_dataset, ranged, 1) == 0
    assert load_network(ranged, "ss")[1]["config"]["correction"] == "range"


def test_fine_tuning_starts_from_the_shipped_weights_on_the_chosen_frames(tiny_dataset, tmp_path, capsys):
    from reframe_core.weights import shipped

    # Adam moves every weight by about lr per step whatever the gradient: at lr 1e-9 the result is the start.
    tuned = tmp_path / "tuned.pt"
    assert _train(tiny_dataset, tuned, 2, "--init", "shipped", "--frames", "3-5", "--lr", "1e-9") == 0
    start, shipped_payload = load_network(shipped("ss_x2"), "ss")
    model, payload = load_network(tuned, "ss")
    for (name, x), (_, y) in zip(start.state_dict().items(), model.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=0, atol=1e-6, msg=name)
    card = payload["card"]
    assert card["train_frames"] == 3 and card["frames"] == "3-5"  # of the six frames 3-8
    assert card["init"]["file"] == "shipped ss_x2.pt" and card["init"]["steps"] == shipped_payload["card"]["steps"]
    assert card["init"]["config"] == shipped_payload["config"]
    assert card["train_data"] == ["slow_pan 48x48"]  # the dataset's scene and size, no path of this machine
    # Another configuration than the shipped one is refused with what differs; frames the data lacks too.
    capsys.readouterr()
    assert _train(tiny_dataset, tmp_path / "v3.pt", 1, "--init", "shipped", "--design", "v3") == 2
    assert "design 'v3' here, 'v4' in ss_x2.pt" in capsys.readouterr().err
    assert _train(tiny_dataset, tmp_path / "wide.pt", 1, "--slow-width", "32") == 2
    assert "--slow-width is design v4's" in capsys.readouterr().err
    assert _train(tiny_dataset, tmp_path / "none.pt", 1, "--frames", "20-30") == 2
    assert re.search(r"has no frame in 20-30 .*\(it has 3-8\)", capsys.readouterr().err)
    # eval --frames scores the rest of the shot only.
    report_path = tmp_path / "q.json"
    assert main(["eval", "--data", str(tiny_dataset), "--weights", str(tuned), "--frames", "6-8", "--json", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["reports"][0]["frames"] == 3


def test_a_v4_network_trained_from_a_v2_starts_from_what_it_computes(tiny_dataset, tmp_path):
    """--design v4 --init V2_FILE: the wider cached branch starts as an exact copy of that v2's function (lr 1e-9
    leaves the start), so training begins from its quality, not from scratch."""
    from reframe_core.networks import get_network
    from reframe_core.weights import save_weights, shipped

    v2, v2_payload = load_network(shipped("ss_x1.5"), "ss")  # the 1.5x weights are a trained v2
    assert v2_payload["config"]["design"] == "v2"
    v2_file = tmp_path / "v2.pt"
    save_weights(v2_file, "ss", v2_payload["config"], v2, v2_payload["card"])
    grown = tmp_path / "v4.pt"
    assert _train(tiny_dataset, grown, 1, "--init", str(v2_file), "--design", "v4", "--slow-width", "32", "--lr", "1e-9") == 0
    v4, payload = load_network(grown, "ss")
    assert payload["config"] == {**v2_payload["config"], "design": "v4", "slow_width": 32}
    assert payload["card"]["init"]["file"] == str(v2_file) and payload["card"]["init"]["config"]["design"] == "v2"
    inputs = get_network("ss").example_inputs(48, 64, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(v4.eval()(*inputs), v2.eval()(*inputs), rtol=1e-4, atol=1e-5)


def test_interpolated_weights_run_from_the_start_to_the_trained_network(tmp_path, capsys):
    """interpolate-weights: (1 - alpha) x start + alpha x end, with a v2 start grown into the v4 end's design so
    that alpha 0 computes what the v2 computed, and the parts only v4 has come from the end (never fresh noise)."""
    from reframe_core.networks.supersampling import v4_from_v2

    entry = get_network("ss")
    torch.manual_seed(5)
    v2 = entry.build(design="v2", correction="range").eval()
    with torch.no_grad():  # weights away from their initialisation, as trained ones are
        for p in v2.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        v4 = v4_from_v2(v2, slow_width=32)
        for p in v4.parameters():  # "trained on": every weight moved, the added channels read now
            p.add_(torch.randn_like(p) * 0.05)
    start, end = tmp_path / "v2.pt", tmp_path / "v4.pt"
    save_weights(start, "ss", {"width": 24, "design": "v2", "correction": "range"}, v2, {"steps": 10})
    v4_config = {"width": 24, "design": "v4", "correction": "range", "slow_width": 32}
    save_weights(end, "ss", v4_config, v4, {"steps": 20, "scale": 2.0})

    def line(alpha):
        out = tmp_path / f"a{alpha}.pt"
        assert main(["interpolate-weights", "--workload", "ss", "--start", str(start), "--end", str(end),
                     "--alpha", str(alpha), "--out", str(out)]) == 0
        return load_network(out, "ss")

    inputs = entry.example_inputs(32, 48, batch=2)
    with torch.no_grad():
        at_start, payload = line(0.0)
        assert payload["config"] == v4_config and payload["card"]["interpolated"]["alpha"] == 0.0
        assert payload["card"]["interpolated"]["start_config"]["design"] == "v2" and payload["card"]["steps"] == 20
        torch.testing.assert_close(at_start.eval()(*inputs), v2(*inputs), rtol=1e-4, atol=1e-5)
        at_end, _ = line(1.0)
        for (name, x), (_, y) in zip(at_end.state_dict().items(), v4.state_dict().items()):
            assert torch.equal(x, y), name
        quarter, _ = line(0.25)
        # A weight both networks have: a quarter of the way from v2's value to the trained one.
        torch.testing.assert_close(quarter.refine[0][0].weight, 0.75 * v2.refine[0][0].weight + 0.25 * v4.refine[0][0].weight)
        # Channels only v4 has are the trained ones all along the line; what reads them is scaled.
        first, v2_first = quarter.slow[0].enc1[0][0], v2.slow.enc1[0][0]
        assert torch.equal(first.weight[24:], v4.slow[0].enc1[0][0].weight[24:])
        torch.testing.assert_close(quarter.slow[0].enc1[1][0].weight[:24, 24:], 0.25 * v4.slow[0].enc1[1][0].weight[:24, 24:])
        torch.testing.assert_close(first.weight[:24], 0.75 * v2_first.weight + 0.25 * v4.slow[0].enc1[0][0].weight[:24])
    capsys.readouterr()
    assert main(["interpolate-weights", "--workload", "ss", "--start", str(start), "--end", str(end), "--alpha", "1.5",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "--alpha must be between 0" in capsys.readouterr().err
    v3 = tmp_path / "v3.pt"
    save_weights(v3, "ss", {"width": 24, "design": "v3"}, entry.build(design="v3"), {})
    assert main(["interpolate-weights", "--workload", "ss", "--start", str(v3), "--end", str(end), "--alpha", "0.5",
                 "--out", str(tmp_path / "x.pt")]) == 2
    said = capsys.readouterr().err
    assert "design 'v3' in v3.pt, 'v4' in v4.pt" in said and "cannot be grown into the second" in said
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("scale,display,low", [(1.5, (120, 256), (80, 171)), (3.0, (96, 256), (32, 85)), (2.0, (64, 96), (32, 48))])
def test_training_crops_put_each_sample_where_it_was_rendered(scale, display, low):
    """At scales that do not divide the frame (256 / 1.5 renders 171 pixels), a training crop's low-res samples,
    read where the network reads them (jitter included), land where they were rendered in the display crop: on a
    smooth ramp, the low-res crop up-sampled bilinearly equals the display crop to rounding."""
    from reframe_core.networks.supersampling import upsample_unjittered
    from reframe_core.training import TrainConfig
    from reframe_core.workloads import get_workload
    from reframe_core.workloads.supersampling import _TrainingFrame

    def ramp(size, jitter=(0.0, 0.0), step=1.0):  # the scene's colour, sampled at pixel centres + jitter
        ys = (torch.arange(size[0]) + 0.5 + jitter[1]) * step
        xs = (torch.arange(size[1]) + 0.5 + jitter[0]) * step
        return torch.stack([xs[None, :].expand(size), ys[:, None].expand(size), torch.zeros(size)]) / 32

    frames = []
    for t in range(3):
        jitter = (0.3 - 0.2 * t, -0.25 + 0.1 * t)
        color = ramp(low, jitter, step=display[1] / low[1])  # low-res pixel centres in display units (x)
        color[1] = ramp(low, jitter, step=display[0] / low[0])[1]
        frames.append(_TrainingFrame(color, torch.zeros(7, *low), torch.tensor(jitter), torch.zeros(2, *display),
                                     ramp(display), torch.ones(1, *low)))
    config = TrainConfig(workload="ss", data=[], out="", scale=scale, crop=64, batch=8, sequence=3)
    batch = get_workload("ss").training_batch([frames], config, torch.Generator().manual_seed(1))
    side = batch["target"].shape[-1]
    assert side == batch["color"].shape[-1] * scale, "the crop sides keep the scale's ratio exactly"
    for t in range(3):
        up = upsample_unjittered(batch["color"][t], batch["jitter"][t], (side, side), mode="bilinear")
        inner = (slice(None), slice(0, 2), slice(4, -4), slice(4, -4))  # away from the clamped border
        misplaced = (up - batch["target"][t])[inner].abs() * 32  # display pixels
        # what remains: the frame's ratio (display / low) differs from the crop's, by up to half a crop's worth
        drift = max(side / 2 * abs(1 - scale * low[i] / display[i]) for i in (0, 1))
        assert misplaced.max() < drift + 0.01, f"frame {t}: samples misplaced by {float(misplaced.max()):.3f} px"
