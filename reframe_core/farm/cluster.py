"""A ReFrame render cut into chunks (:mod:`reframe_core.farm.chunks`) that run as Ray tasks across a cluster.

What it assumes of the cluster, checked at the start on every node that can take a chunk (each failure is one
error naming the node and what it could not do):

- every node runs Ray from a Python environment that has this project installed (``pip install
  'reframe-blender[farm]'``, the same version as the driver's);
- the .blend file and the output folder are on storage every node reaches **at the same path** (NFS, SMB, a
  cluster file system): paths given relative are made absolute where the command runs.

Each chunk is ``reframe-blender render TARGET ... --frames A-B --warmup N`` in a child process of a Ray task
(:func:`reframe_core.farm.node.render_chunk`). A chunk whose render dies, or whose node or worker is lost, is
retried (``retries`` times) and the retry skips the frames already written (the render loop's resume), so every
frame is written once; a chunk the render command refuses (exit status 2: bad file, full disk) is not retried.
Progress comes back through a small actor fed by the chunks' ``Saved:`` lines. The per-chunk reports are
merged into one report, written beside the frames (on the shared storage, by a task) and returned.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import asdict, dataclass, field

from reframe_core import __version__
from reframe_core.errors import ReframeError, SettingsError
from reframe_core.farm.chunks import Chunk, plan_chunks
from reframe_core.farm.node import ChunkCrashed, NodeError, plan, render_chunk


class FarmError(ReframeError):
    """The farm run could not start or did not finish (what failed, and how to go on)."""


@dataclass
class FarmJob:
    """``target``: a .blend path or a library scene name; ``render_words``: the render options every chunk gets
    (mode, policy, output ...), without --frames/--warmup; ``frames``: None for the scene's range."""

    target: str
    render_words: list[str] = field(default_factory=list)
    frames: range | None = None
    chunk: int = 24
    warmup: int = 3
    retries: int = 3
    cpus_per_chunk: float = 1.0
    gpus_per_chunk: float = 0.0
    report: str | None = None

    def words(self) -> list[str]:
        frames = [] if self.frames is None else ["--frames", f"{self.frames.start}-{self.frames.stop - 1}"]
        return ["render", self.target, *self.render_words, *frames]


def _ray():
    try:
        import ray
    except ImportError:
        raise SettingsError("the farm runs on Ray, which is not installed here: pip install 'reframe-blender[farm]' "
                            "(on every node of the cluster too)") from None
    return ray


def connect(address: str, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto``: the one started on this machine with ``ray start``; ``ray://
    HOST:10001``: a remote head) or start one on this machine alone (``local``). An already connected driver (a
    test, a notebook) is used as it is."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return
    advice = ("start one with 'ray start --head' on the head node and 'ray start --address HEAD:6379' on each "
              "worker, or pass --address local to use this machine alone")
    try:
        _check_reachable(address)
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise FarmError(f"no Ray cluster at --address {address} ({' '.join(str(exc).split())[:200]}): "
                        f"{advice}") from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a head that does not answer: Ray itself keeps retrying for minutes."""
    if address.startswith("ray://"):
        host_port = address[len("ray://"):]
    else:
        from ray._private.services import canonicalize_bootstrap_address  # what ray.init does with "auto"

        host_port = canonicalize_bootstrap_address(address)
        if host_port is None:
            raise ConnectionError("no running cluster found on this machine")
    host, _, port = host_port.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


# --- the tasks (run on the nodes) -----------------------------------------------------------------------------

class _Progress:
    """Frames saved and attempts started, as the chunks report them (a Ray actor)."""

    def __init__(self):
        self.saved: list[tuple[str, str]] = []  # (chunk, file), in the order they were saved
        self.attempts: dict[str, list[str]] = {}  # chunk -> the node of each attempt

    def started(self, label: str, node: str) -> None:
        self.attempts.setdefault(label, []).append(node)

    def add(self, label: str, path: str) -> None:
        self.saved.append((label, path))

    def since(self, index: int) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
        return self.saved[index:], self.attempts


def _node_address() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _check_node(words: list[str], version: str) -> dict:
    node = _node_address()
    import reframe_core

    if reframe_core.__version__ != version:
        raise NodeError(f"node {node} has reframe-blender {reframe_core.__version__} (in {reframe_core.__file__}), "
                        f"the driver {version}: install the same version on every node")
    return plan(words, node)


def _probe(folder: str, name: str, action: str, writer: str = "") -> None:
    """``write``, ``read`` (must hold ``writer``) or ``remove`` a probe file in the output folder: nodes that see
    each other's files share the folder, not just its path."""
    node = _node_address()
    path = os.path.join(folder, name)
    if action == "write":
        with open(path, "w") as f:
            f.write(node)
    elif action == "read":
        try:
            with open(path) as f:
                seen = f.read()
        except OSError:
            seen = None
        if seen != writer:
            raise NodeError(f"node {node} does not see the file node {writer} wrote into the output folder {folder}: "
                            "the folder is not shared storage (every node must reach the same folder at the same "
                            "path: an NFS/SMB mount, a cluster file system)")
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _run_chunk(words: list[str], label: str, progress) -> dict:
    import ray

    node = _node_address()

    def tell(method, *args):
        # Waited for, so the driver has every frame before it sees the task finish; a lost progress actor costs
        # the bar, not the chunk.
        try:
            ray.get(getattr(progress, method).remote(*args), timeout=30)
        except Exception:  # noqa: BLE001 -- progress is best effort by design
            pass

    tell("started", label, node)
    report = render_chunk(words, label, node, on_saved=lambda path: tell("add", label, path))
    return {"node": node, "report": report}


def _write_json(path: str, data: dict) -> str:
    import json
    from pathlib import Path

    from reframe_core.frames.buffers import atomic_write

    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str) + "\n"))
    return path


# --- the driver -----------------------------------------------------------------------------------------------

def check_nodes(job: FarmJob) -> list[dict]:
    """Every alive node with CPUs checks the job (``render --plan-only``: the file, the scene, the output folder)
    and that it shares the output folder with the others; returns their plans, or one :class:`FarmError` listing
    every node that cannot take part."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if not nodes:
        raise FarmError("the Ray cluster has no alive node with CPUs to render on")

    def on(node, fn, *args):
        return ray.remote(fn).options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            node["NodeID"], soft=False)).remote(*args)

    def gather(refs) -> list:
        results, problems = [], []
        for node, ref in zip(nodes, refs):
            try:
                results.append(ray.get(ref))
            except Exception as exc:  # a RayTaskError wraps the node's own error
                problems.append(_task_reason(exc, f"node {node.get('NodeManagerAddress', '?')}"))
        if problems:
            raise FarmError("; ".join(problems))
        return results

    plans = gather([on(n, _check_node, job.words(), __version__) for n in nodes])
    first = plans[0]
    for other in plans[1:]:
        if [other[k] for k in ("frames", "shots", "first_file", "file_stat")] != \
                [first[k] for k in ("frames", "shots", "first_file", "file_stat")]:
            raise FarmError(f"nodes {first['node']} and {other['node']} see different files or output paths "
                            f"({first['file']}, {first['first_file']} vs {other['file']}, {other['first_file']}): "
                            "every node must reach the same .blend and folder at the same path")
    if len(nodes) > 1:
        name = f".reframe-farm-probe-{os.getpid()}-{time.time_ns()}"
        try:
            ray.get(on(nodes[0], _probe, first["folder"], name, "write"))
            gather([on(n, _probe, first["folder"], name, "read", first["node"]) for n in nodes])
        finally:
            with contextlib.suppress(Exception):
                ray.get(on(nodes[0], _probe, first["folder"], name, "remove"))
    return plans


def _task_reason(exc: BaseException, where: str) -> str:
    """One line for a task's failure: the node's own error when it raised one, else Ray's, shortened."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, (ReframeError, ChunkCrashed)):
        return str(cause)
    text = " ".join(str(exc).split())
    if "No module named 'reframe_core'" in text:
        return (f"{where} cannot import reframe_core: install reframe-blender[farm] in the Python that Ray runs "
                "on every node")
    return f"{where}: {text[-400:]}"


def run_farm(job: FarmJob, show_progress: bool = True, echo_saved: bool = True) -> dict:
    """Check the nodes, cut the range into chunks, render them as Ray tasks (retried when they fail), merge the
    chunk reports; returns the merged report. The caller has connected (:func:`connect`)."""
    ray = _ray()
    started = time.perf_counter()
    plans = check_nodes(job)
    first = plans[0]
    frames = range(first["frames"][0], first["frames"][1] + 1)
    chunks = plan_chunks(frames, [tuple(s) for s in first["shots"]], job.chunk, job.warmup)
    finished = set(first["finished"])
    todo = [c for c in chunks if not set(c.frames) <= finished]

    # On the head node, which the cluster cannot lose and go on: a worker node lost mid-run takes only its chunks.
    progress = ray.remote(_Progress).options(num_cpus=0, resources={"node:__internal_head__": 0.001}).remote()
    task = ray.remote(_run_chunk)
    refs = {}
    for chunk in todo:
        words = ["render", job.target, *job.render_words, *chunk.render_words()]
        ref = task.options(num_cpus=job.cpus_per_chunk, num_gpus=job.gpus_per_chunk, max_retries=job.retries,
                           retry_exceptions=[ChunkCrashed]).remote(words, chunk.label, progress)
        refs[ref] = chunk

    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(frames), initial=len(finished), unit="frame", desc=f"farm {len(todo)} chunks")
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    seen, saved = 0, []
    attempts: dict[str, list[str]] = {}
    pending = list(refs)
    try:
        while True:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5) if pending else ([], [])
            new, attempts = ray.get(progress.since.remote(seen))
            seen += len(new)
            for label, path in new:
                if echo_saved:
                    _say(bar, f"Saved: '{path}'")
                if bar is not None and all(path != p for _, p in saved):
                    bar.update(1)
                saved.append((label, path))
            for ref in ready:
                chunk = refs[ref]
                try:
                    results[chunk.label] = ray.get(ref)
                except Exception as exc:
                    failures[chunk.label] = _task_reason(exc, f"chunk {chunk.label}")
            if not pending:
                break
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)  # the renders die with their workers; finished frames stay
        raise
    finally:
        if bar is not None:
            bar.close()
        ray.kill(progress)

    report = merge_reports(job, frames, chunks, finished, results, failures, attempts, saved, plans,
                           time.perf_counter() - started)
    path = job.report or os.path.join(first["folder"], f"reframe-farm-{_mode(job)}-{frames.start:04d}-"
                                                       f"{frames.stop - 1:04d}.json")
    report["report"] = path
    ray.get(ray.remote(_write_json).options(num_cpus=0).remote(path, report))
    if failures:
        raise FarmError(f"{len(failures)} of {len(todo)} chunks failed ({'; '.join(failures.values())}); the frames "
                        f"written are kept: run the same command again to render the rest (report {path})")
    return report


def _say(bar, text: str) -> None:
    if bar is not None:
        bar.write(text)
    else:
        print(text, flush=True)


def _mode(job: FarmJob) -> str:
    words = job.render_words
    return words[words.index("--mode") + 1] if "--mode" in words else "ss"


def merge_reports(job: FarmJob, frames: range, chunks: list[Chunk], finished: set[int], results: dict,
                  failures: dict, attempts: dict, saved: list[tuple[str, str]], plans: list[dict],
                  wall_s: float) -> dict:
    """One report for the run: every chunk (where, how many attempts, what it wrote), every file written with its
    chunk (from the chunks' ``Saved:`` lines, so attempts that were killed before their report count too), and
    totals."""
    rows = []
    for chunk in chunks:
        result = results.get(chunk.label)
        report = result["report"] if result else None
        row = {**asdict(chunk), "label": chunk.label, "attempts": len(attempts.get(chunk.label, [])),
               "nodes": attempts.get(chunk.label, []),
               "status": ("already done" if set(chunk.frames) <= finished else
                          "failed: " + failures[chunk.label] if chunk.label in failures else
                          report["status"] if report else "not run"),
               "report": report["report"] if report else None}
        if report:
            t = report["totals"]
            row.update(written=t["written"], skipped=t["skipped"], warmup_frames=t["warmup"], wall_s=report["wall_s"],
                       render_s=t["render_s"], network_s=t["network_s"])
        rows.append(row)
    files = [path for _, path in saved]
    done = [r for r in rows if "wall_s" in r]
    status = "complete" if not failures else f"failed: {len(failures)} chunks"
    return {"status": status, "target": job.target, "render_words": job.render_words,
            "frames": [frames.start, frames.stop - 1], "chunk_size": job.chunk, "warmup": job.warmup,
            "nodes": sorted({p["node"] for p in plans}), "wall_s": wall_s, "reframe_version": __version__,
            "totals": {"written": len(set(files)), "written_twice": sorted({f for f in files if files.count(f) > 1}),
                       "already_done": len(finished & set(frames)),
                       "warmup": sum(r["warmup_frames"] for r in done),
                       "chunks": len(chunks), "retried_chunks": sum(r["attempts"] > 1 for r in rows),
                       "chunk_wall_s": sum(r["wall_s"] for r in done),
                       "render_s": sum(r["render_s"] for r in done), "network_s": sum(r["network_s"] for r in done)},
            "chunks": rows, "written": [{"file": path, "chunk": label} for label, path in saved]}
