"""``reframe-blender bench-bridge``: what the server transport costs per frame, and whether it leaks.

* Round trip: the same SS frames (display size, low-res buffers in, display image back) stepped uncached in
  process and through a server this command starts, in turn; the transport's cost is measured per frame (the
  client's call minus the server's time in it, plus the server's copies from and to shared memory) and set
  against the in-process step (the network's inference at that size). The frames are synthetic (random
  values, a panning camera): what the transport copies and checks does not depend on the picture.
* Soak: many frames through one server session, the server's resident memory after a warm-up and at the end,
  and the bridge segments left in ``/dev/shm`` after the client closes.
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np

from bridge import segments
from bridge.runtime import connect
from reframe_core.frames.buffers import CameraData, FrameBuffers


def synthetic_frames(count: int, size: tuple[int, int], seed: int = 0) -> list[FrameBuffers]:
    """``count`` frames of (H, W) buffers: random colour, a plane 10 units away, a camera panning 1 cm a frame."""
    rng = np.random.default_rng(seed)
    h, w = size
    f = 1.0 / math.tan(math.radians(20))
    projection = [[f * h / w, 0, 0, 0], [0, f, 0, 0], [0, 0, -1.002, -0.2002], [0, 0, -1, 0]]
    normal = np.zeros((h, w, 3), np.float32)
    normal[..., 2] = 1
    frames = []
    for i in range(count):
        world = [[1, 0, 0, 0.01 * i], [0, 1, 0, 0], [0, 0, 1, 10], [0, 0, 0, 1]]
        camera = CameraData(frame=i + 1, name="Camera", world_matrix=world, projection=projection, lens_mm=50.0,
                            fov_x_deg=40.0, fov_y_deg=40.0 * h / w, clip_start=0.1, clip_end=100.0,
                            resolution=(w, h))
        frames.append(FrameBuffers(color=rng.random((h, w, 3), np.float32), alpha=np.ones((h, w), np.float32),
                                   depth=np.full((h, w), 10.0, np.float32), normal=normal,
                                   albedo=rng.random((h, w, 3), np.float32),
                                   motion_prev=np.zeros((h, w, 2), np.float32),
                                   motion_next=np.zeros((h, w, 2), np.float32), camera=camera,
                                   jitter=np.array([0.25, -0.25], np.float32)))
    return frames


def round_trip(display_size=(1080, 1920), scale: float = 2.0, frames: int = 8, warmup: int = 2,
               address: str | None = None, python: str | None = None, device: str = "cpu") -> dict:
    """Each frame stepped in process and through the server in turn (so that the machine's drift hits both);
    the transport per frame is measured directly: the client's call minus the server's time in it, plus the
    server's copies from and to shared memory."""
    low = (round(display_size[0] / scale), round(display_size[1] / scale))
    sequence = synthetic_frames(frames + warmup, low)
    settings = dict(display_size=display_size, scale=scale, policy=None, device=device)
    local = connect("inprocess").open_session("ss", **settings)
    options = {k: v for k, v in {"address": address, "python": python}.items() if v}
    inprocess, through_server, transport = [], [], []
    with connect("server", **options) as runtime:
        remote = runtime.open_session("ss", **settings)
        previous = None
        for i, frame in enumerate(sequence):
            hints = frame.hints(previous)
            start = time.perf_counter()
            local.step(frame, hints)
            middle = time.perf_counter()
            remote.step(frame, hints)
            end = time.perf_counter()
            if i >= warmup:
                inprocess.append((middle - start) * 1e3)
                through_server.append((end - middle) * 1e3)
                transport.append((end - middle) * 1e3 - remote.last_server_ms + remote.last_server_copy_ms)
            previous = frame
        machine = runtime.machine()
    local.close()
    inference = statistics.median(inprocess)
    return {"display_size": list(display_size), "low_res": list(low), "frames": frames,
            "input_mb": sum(a.nbytes for a in sequence[0].arrays().values()) / 1e6,
            "output_mb": display_size[0] * display_size[1] * 12 / 1e6,
            "inprocess_ms_median": inference, "server_ms_median": statistics.median(through_server),
            "transport_ms_median": statistics.median(transport),
            "transport_share": statistics.median(transport) / inference,
            "inprocess_ms": inprocess, "through_server_ms": through_server, "transport_ms": transport,
            "machine": machine}


def soak(frames: int = 1000, display_size=(256, 256), scale: float = 2.0, warm: int = 100, every: int = 10,
         address: str | None = None, python: str | None = None, progress=None) -> dict:
    """Resident memory of the server sampled every ``every`` frames after ``warm``: the growth is the peak of the
    second half against the peak of the first. Peaks, not two single readings: the allocator hands ~20 MB back
    and takes it again from one moment to the next (measured: 394, 375, 394 MB at frames 250, 500, 750, then flat
    at 394 MB up to frame 2500), which a leak would not do."""
    import psutil

    warm = max(1, min(warm, frames // 10))
    low = (round(display_size[0] / scale), round(display_size[1] / scale))
    pool = synthetic_frames(50, low)  # reused in a loop: the soak is about the server, not about the frames
    options = {k: v for k, v in {"address": address, "python": python}.items() if v}
    before = set(segments.our_segments())
    start = time.perf_counter()
    with connect("server", **options) as runtime:
        session = runtime.open_session("ss", display_size=display_size, scale=scale, policy="motion")
        server = psutil.Process(runtime.info()["server_pid"])
        samples, previous = [], None
        for i in range(frames):
            frame = pool[i % len(pool)]
            session.step(frame, frame.hints(previous))  # each wrap of the pool is a frame jump: a cut
            previous = frame
            if i + 1 >= warm and ((i + 1 - warm) % every == 0 or i + 1 == frames):
                samples.append(server.memory_info().rss)
            if progress is not None:
                progress(i + 1)
        during = segments.our_segments(server.pid)
        stats = session.stats()
        session.close()
    after = sorted(set(segments.our_segments()) - before)
    half = len(samples) // 2
    first, second = max(samples[:half]), max(samples[half:])
    return {"frames": frames, "display_size": list(display_size), "warmup_frames": warm, "sample_every": every,
            "rss_mb_peak_first_half": first / 1e6, "rss_mb_peak_second_half": second / 1e6,
            "rss_mb_min": min(samples) / 1e6, "rss_growth": (second - first) / first,
            "rss_mb_samples": [round(v / 1e6, 1) for v in samples],
            "segments_during": len(during), "segments_left_after_close": after, "hit_rate": stats.get("hit_rate"),
            "wall_s": time.perf_counter() - start}


def _p(values, q) -> float:
    return float(np.percentile(values, q))


def format_report(report: dict) -> str:
    lines = []
    if "round_trip" in report:
        r = report["round_trip"]
        lines += [f"round trip at {r['display_size'][1]}x{r['display_size'][0]} (SS x{r['display_size'][0] / r['low_res'][0]:g}: "
                  f"{r['input_mb']:.1f} MB of buffers in, {r['output_mb']:.1f} MB image out), median of {r['frames']} frames:",
                  f"  in process (SS inference)  {r['inprocess_ms_median']:9.1f} ms  "
                  f"(p10-p90 {_p(r['inprocess_ms'], 10):.0f}-{_p(r['inprocess_ms'], 90):.0f})",
                  f"  through the server         {r['server_ms_median']:9.1f} ms  "
                  f"(p10-p90 {_p(r['through_server_ms'], 10):.0f}-{_p(r['through_server_ms'], 90):.0f})",
                  f"  transport                  {r['transport_ms_median']:9.1f} ms  = {r['transport_share']:.1%} of "
                  f"inference (target <= 5%): socket, the client's and the server's copies to and from shared memory"]
    if "soak" in report:
        s = report["soak"]
        lines += [f"soak: {s['frames']} frames at {s['display_size'][1]}x{s['display_size'][0]} through one server "
                  f"session in {s['wall_s']:.0f} s (hit rate {s['hit_rate']:.0%})",
                  f"  server resident memory, sampled every {s['sample_every']} frames from frame {s['warmup_frames']}: "
                  f"peak {s['rss_mb_peak_first_half']:.1f} MB in the first half, {s['rss_mb_peak_second_half']:.1f} MB "
                  f"in the second: {s['rss_growth']:+.2%} (target < 5%; lowest sample {s['rss_mb_min']:.1f} MB)",
                  f"  segments: {s['segments_during']} while open, {len(s['segments_left_after_close'])} left after close"]
    return "\n".join(lines)
