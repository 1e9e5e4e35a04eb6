"""scripts/datasets.sh (make datasets): every command it runs is a `reframe-blender dataset` call the command line
accepts, on a known scene and inside its frame range; its training group is the data the shipped SS card names;
an unknown group is refused before anything renders."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from reframe_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "datasets.sh"


def _commands(*groups: str) -> list[list[str]]:
    """The dataset commands the script would run (its RF, the command it calls, replaced by echo)."""
    done = subprocess.run(["bash", str(SCRIPT), *groups], env={**os.environ, "RF": "echo", "OUT": "out"},
                          capture_output=True, text=True, check=True)
    return [line.split() for line in done.stdout.splitlines() if line.startswith("dataset ")]


def test_every_command_is_a_valid_dataset_call_on_a_known_scene():
    pytest.importorskip("bpy")  # a scene's frame range is read from its module, which builds with bpy
    from scenes import get_scene

    parser = build_parser()
    commands = _commands()
    assert commands == _commands("heldout", "heldout360", "training", "training360", "scales", "cheap")  # all, in order
    outs = set()
    for argv in commands:
        args = parser.parse_args(argv)
        first, last = (int(v) for v in args.frames.split("-"))
        start, end = get_scene(args.scene).frames
        assert start <= first <= last <= end, argv
        assert Path(args.out).parts[0] == "out" and Path(args.out).name == args.scene, argv
        outs.add(args.out)
    held_out = {args.out for args in map(parser.parse_args, _commands("heldout"))}
    assert held_out == {f"out/data/{s}" for s in ("slow_pan", "emissive_transparent", "furnished_room")}
    assert {f"out/data360/{s}" for s in ("slow_pan", "emissive_transparent", "furnished_room")} <= outs


def test_training_group_is_the_data_of_the_shipped_ss_model_card():
    card = (ROOT / "reframe_core" / "weights" / "ss_x2.md").read_text()
    named = set(re.search(r"D=(out/data/[a-z_,/]+)", card).group(1).split(","))
    parser = build_parser()
    training = {parser.parse_args(argv).out for argv in _commands("training")}
    assert training == named and len(named) == 9


def test_an_unknown_group_is_refused_before_anything_runs():
    done = subprocess.run(["bash", str(SCRIPT), "heldout", "everything"], env={**os.environ, "RF": "false"},
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert "unknown group 'everything': one of heldout, heldout360, training, training360, scales, cheap" in done.stderr


def test_each_cheap_pass_matches_its_full_sets_frames_and_samples():
    """FE multiplies by the cheap pass and relights with it: rendered with fewer samples than its full set it is
    aliased (the FE model card), and frames it lacks stop eval and train."""
    parser = build_parser()
    full = {}
    for argv in _commands("heldout", "heldout360", "training"):
        args = parser.parse_args(argv)
        full[(args.scene, args.resolution)] = (args.frames, args.samples)
    cheap = [parser.parse_args(argv) for argv in _commands("cheap")]
    assert cheap and all(args.cheap and args.scales == "1" for args in cheap)
    assert {(args.scene, args.resolution): (args.frames, args.samples) for args in cheap} == full
