"""Render farms: how a range is cut into chunks (Python and the Flamenco job type agree), and chunked renders on a
local Ray cluster started here (``ray.init`` with 2 CPUs) compared with one continuous render; a chunk killed
mid-way is retried with nothing written twice; a file or folder a node cannot reach is one clear error."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reframe_core.errors import SettingsError
from reframe_core.farm.chunks import Chunk, plan_chunks
from reframe_core.frames import records

REPO = Path(__file__).resolve().parents[1]
JOB_TYPE = REPO / "reframe_core" / "farm" / "flamenco" / "reframe_render.js"
# A seam (a chunk's first frame, warmed up on 3 frames instead of the whole history) may differ from the
# continuous render by at most what the project lets the cache change in a frame against the uncached network
# (mean FLIP 0.02, the caching target of the benchmark): a seam is then no more visible than a cache hit.
SEAM_FLIP_BOUND = 0.02


# --- chunking (pure) ------------------------------------------------------------------------------------------

def test_one_shot_is_split_into_near_equal_chunks_that_warm_up():
    assert plan_chunks(range(1, 13), [(1, 12)], 4, 3) == [Chunk(1, 4, 3, False), Chunk(5, 8, 3, False),
                                                           Chunk(9, 12, 3, False)]
    assert [(c.first, c.last) for c in plan_chunks(range(1, 11), [(1, 10)], 4, 3)] == [(1, 4), (5, 7), (8, 10)]


def test_chunks_break_at_cuts_without_warmup_and_short_shots_are_packed():
    # Shot 4-12 (9 frames) in three chunks of 3; the chunk at the cut needs no warm-up.
    assert plan_chunks(range(1, 13), [(1, 3), (4, 12)], 4, 3) == [
        Chunk(1, 3, 3, False), Chunk(4, 6, 0, True), Chunk(7, 9, 3, False), Chunk(10, 12, 3, False)]
    # Three 2-frame shots with chunks of 4: the first two share a chunk (the render resets at the cut itself).
    assert plan_chunks(range(1, 7), [(1, 2), (3, 4), (5, 6)], 4, 3) == [Chunk(1, 4, 3, False), Chunk(5, 6, 0, True)]


def test_bad_chunk_settings_are_refused_by_name():
    with pytest.raises(SettingsError, match="--chunk"):
        plan_chunks(range(1, 5), [(1, 4)], 0, 3)
    with pytest.raises(SettingsError, match="do not cover"):
        plan_chunks(range(1, 5), [(1, 2)], 2, 3)


def _random_cases(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        first = rng.randint(-5, 50)
        last = first + rng.randint(0, 60)
        cuts = sorted(rng.sample(range(first + 1, last + 1), k=min(rng.randint(0, 5), last - first)))
        cases.append({"first": first, "last": last, "cuts": cuts, "size": rng.randint(1, 20),
                      "warmup": rng.randint(0, 5)})
    return cases


def _shots(first, last, cuts):
    bounds = [first, *cuts, last + 1]
    return [(a, b - 1) for a, b in zip(bounds, bounds[1:])]


def test_every_chunking_covers_each_frame_once_within_the_chunk_size():
    for case in _random_cases(300):
        frames = range(case["first"], case["last"] + 1)
        chunks = plan_chunks(frames, _shots(case["first"], case["last"], case["cuts"]), case["size"], case["warmup"])
        assert [f for c in chunks for f in c.frames] == list(frames)
        assert all(len(c.frames) <= case["size"] for c in chunks)
        assert all((c.warmup == 0) == (c.at_cut or case["warmup"] == 0) for c in chunks)
        assert all(c.first in case["cuts"] for c in chunks if c.at_cut)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs the Flamenco job type's script here")
def test_the_flamenco_job_type_cuts_the_same_chunks_and_runs_the_addon_per_chunk():
    cases = _random_cases(300)
    script = f"""
const jt = require({json.dumps(str(JOB_TYPE))});
const cases = {json.dumps(cases)};
const chunks = cases.map(c => jt.reframeChunks(c.first, c.last, c.cuts, c.size, c.warmup));
// Flamenco's job-compiler API as its job types use it (author.Task / author.Command / job.addTask): recorded.
const tasks = [];
global.author = {{
  Task: (name, type) => {{ const t = {{name, type, commands: [], addCommand: c => t.commands.push(c)}}; return t; }},
  Command: (type, params) => ({{type, params}}),
}};
jt.compileJob({{settings: {{frames: "1-12", chunk_size: 4, warmup: 3, cuts: "1,4", blendfile: "/shared/shot.blend",
                render_output_path: "/shared/out/######"}}, addTask: t => tasks.push(t)}});
console.log(JSON.stringify({{chunks, tasks}}));
"""
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    for case, got in zip(cases, data["chunks"]):
        frames = range(case["first"], case["last"] + 1)
        expected = plan_chunks(frames, _shots(case["first"], case["last"], case["cuts"]), case["size"], case["warmup"])
        assert [(c["first"], c["last"], c["warmup"], c["atCut"]) for c in got] == \
            [(c.first, c.last, c.warmup, c.at_cut) for c in expected], case
    # Frames 1-12 with a camera switch at 4 (the marker at 1 binds the first camera): 1-3, then 4-12 in threes.
    args = [t["commands"][0]["params"]["args"] for t in data["tasks"]]
    # The warm-up is the setting's everywhere: the render itself never warms up across a real camera switch.
    assert [a[-1] for a in args] == [
        f"import bpy; bpy.ops.reframe.render_animation(frame_start={a}, frame_end={b}, warmup=3)"
        for a, b in ((1, 3), (4, 6), (7, 9), (10, 12))]
    assert all(a[:5] == ["--render-output", "/shared/out/######", "--python-exit-code", "1", "--python-expr"]
               for a in args), "a failed chunk must fail its task"
    assert all(t["commands"][0]["type"] == "blender-render" and
               t["commands"][0]["params"]["blendfile"] == "/shared/shot.blend" for t in data["tasks"])


# --- chunked renders on a local Ray cluster ----------------------------------------------------------------

bpy_needed = pytest.mark.blender


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def blend12(tmp_path_factory) -> Path:
    pytest.importorskip("bpy")
    sys.path.insert(0, str(Path(__file__).parent))
    import render_scene

    path = tmp_path_factory.mktemp("farm") / "shot12.blend"
    render_scene.build(path, frames=(1, 12))
    return path


def _farm(*argv, address="auto", timeout=600) -> subprocess.CompletedProcess:
    """The command line, as a user runs it, joining the test's cluster (--address auto)."""
    return subprocess.run([sys.executable, "-m", "reframe_core.cli", "farm", *map(str, argv), "--address", address,
                           "--quiet"], capture_output=True, text=True, timeout=timeout)


@bpy_needed
def test_three_chunks_give_the_continuous_frames_except_at_the_seams(cluster, blend12, tmp_path):
    from reframe_core.farm.bench import bench_farm

    result = bench_farm(str(blend12), ["--mode", "ss"], range(1, 13), 4, 3, tmp_path)
    assert result["chunks"] == ["0001-0004", "0005-0008", "0009-0012"]
    rows = {r["frame"]: r for r in result["frames_compared"]}
    # The first chunk starts where the continuous render starts: the same pixels.
    assert all(rows[f]["max_abs"] == 0 for f in range(1, 5))
    assert [f for f, r in rows.items() if r["seam"]] == [5, 9]
    # After a seam the chunk's frames converge to the continuous ones as the history refills.
    for seam in (5, 9):
        chunk = [rows[f]["flip"] for f in range(seam, seam + 4)]
        assert 0 < chunk[0] <= SEAM_FLIP_BOUND and chunk[-1] <= chunk[0], chunk
    farm = json.loads(Path(result["farm_report"]).read_text())
    assert farm["status"] == "complete" and farm["totals"]["written"] == 12
    assert [c["warmup_frames"] for c in farm["chunks"]] == [0, 3, 3], "warm-up: none at the start of the shot"


@bpy_needed
def test_a_chunk_killed_mid_way_is_retried_and_every_frame_is_written_once(cluster, blend12, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "frames"
    killed = []

    def kill_second_chunk():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if (out / "f_0005.png").exists():
                for p in psutil.process_iter(["cmdline"]):
                    cmd = p.info["cmdline"] or []
                    if "render" in cmd and "5-8" in cmd and "--plan-only" not in cmd:
                        worker = p.parent()  # the Ray worker running the chunk's task
                        worker.send_signal(signal.SIGKILL)
                        killed.append((worker.pid, p.pid))
                        break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_second_chunk, daemon=True)
    killer.start()
    done = _farm(blend12, "--mode", "native", "--chunk", "4", "--out", f"{out}/f_####")
    killer.join(timeout=5)
    assert killed, "the test never caught chunk 5-8 running"
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(next(out.glob("reframe-farm-*.json")).read_text())
    chunks = {c["label"]: c for c in report["chunks"]}
    assert chunks["0005-0008"]["attempts"] == 2 and chunks["0005-0008"]["skipped"] >= 1, "kept what it wrote"
    assert [c["attempts"] for label, c in chunks.items() if label != "0005-0008"] == [1, 1]
    assert report["totals"]["written"] == 12 and report["totals"]["written_twice"] == []
    written = [(e["frame"], e["file"]) for e in records.entries(out)]
    assert sorted(written) == [(n, f"f_{n:04d}.png") for n in range(1, 13)], "each frame written exactly once"
    assert sorted(p.name for p in out.glob("f_*.png")) == sorted(name for _, name in written)
    assert "took 2 attempts" in done.stdout and done.stdout.count("Saved: '") == 12


@bpy_needed
def test_a_file_or_folder_a_node_cannot_reach_is_one_clear_error(cluster, blend12, tmp_path):
    missing = _farm(tmp_path / "elsewhere" / "shot.blend", "--chunk", "4")
    assert missing.returncode == 2
    error = missing.stderr.strip().splitlines()[-1]
    assert error.startswith("reframe-blender farm: error: node ") and "does not exist" in error, missing.stderr
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    unwritable = _farm(blend12, "--chunk", "4", "--out", f"{blocker}/frames/f_####")
    assert unwritable.returncode == 2
    error = unwritable.stderr.strip().splitlines()[-1]
    assert "cannot render this job" in error and "Cannot write frames to the folder" in error, unwritable.stderr
    assert not any(tmp_path.glob("**/f_*.png")), "nothing rendered"
    overwrite = _farm(blend12, "--overwrite")
    assert overwrite.returncode == 2 and "never overwrites" in overwrite.stderr
    # A head that does not answer fails in seconds (Ray alone retries for minutes), saying how to start one.
    nobody = _farm(blend12, address="127.0.0.1:9", timeout=60)
    assert nobody.returncode == 2 and "no Ray cluster at --address 127.0.0.1:9" in nobody.stderr


@bpy_needed
def test_print_commands_gives_one_render_line_per_chunk_cut_at_the_camera_switch(tmp_path):
    pytest.importorskip("bpy")
    sys.path.insert(0, str(Path(__file__).parent))
    import render_scene

    blend = tmp_path / "two_cameras.blend"
    render_scene.build(blend, second_camera=True)  # Camera.B from frame 4
    done = subprocess.run([sys.executable, "-m", "reframe_core.cli", "farm", str(blend), "--chunk", "2",
                           "--print-commands"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("reframe-blender render")]
    assert [line.split("--frames ")[1] for line in lines] == ["1-2 --warmup 3", "3-3 --warmup 3", "4-5 --warmup 0",
                                                                "6-6 --warmup 3"]


def test_the_deadline_script_submits_a_render_line_per_task_that_the_render_command_accepts(tmp_path):
    """Deadline is not here: a stand-in ``deadlinecommand`` records the submission; the per-task line Deadline
    would run (its <STARTFRAME>/<ENDFRAME>/<QUOTE> tokens filled in) must parse as ``reframe-blender render``."""
    import shlex

    from reframe_core.cli import build_parser

    recorder = tmp_path / "deadlinecommand"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    recorder.chmod(0o755)
    script = REPO / "reframe_core" / "farm" / "deadline" / "submit_reframe.sh"
    env = {**os.environ, "DEADLINECOMMAND": str(recorder), "DEADLINE_POOL": "gpu"}
    done = subprocess.run([str(script), "/shared/my shot.blend", "1-240", "24", "--mode", "fe", "--k", "3"],
                          capture_output=True, text=True, env=env, check=True)
    argv = json.loads(done.stdout)
    options = dict(zip(argv[1::2], argv[2::2]))
    assert argv[0] == "-SubmitCommandLineJob" and options["-executable"] == "reframe-blender"
    assert (options["-frames"], options["-chunksize"], options["-pool"]) == ("1-240", "24", "gpu")
    task = options["-arguments"].replace("<STARTFRAME>", "25").replace("<ENDFRAME>", "48").replace("<QUOTE>", '"')
    args = build_parser().parse_args(shlex.split(task))
    assert (args.command, args.scene, args.frames, args.warmup, args.mode, args.k) == \
        ("render", "/shared/my shot.blend", "25-48", 3, "fe", 3)
    for frames in ("1-x", "5-", ""):
        bad = subprocess.run([str(script), "shot.blend", frames, "24"], capture_output=True, text=True, env=env)
        assert bad.returncode == 2 and "FIRST-LAST" in bad.stderr, frames
