"""The bridge: the runtime session served from another process (``reframe-blender serve``) against the same
session in process, on real captured EEVEE buffers (``tiny_dataset``); failures (server killed or hung, client
killed, start failures), shared memory ownership, security (modes, peer uid, another user), the torch-free client.
The fuzzing of the server with hostile messages is in ``test_bridge_fuzz.py``."""
from dataclasses import replace
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bridge import protocol, segments
from bridge.client import ServerRuntime
from bridge.protocol import BridgeError, RemoteError, ServerUnavailable
from bridge.runtime import connect
from reframe_core.frames.buffers import FrameError
from reframe_core.frames.dataset import Dataset

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534


def _frames(root, scale):
    data = Dataset.open(root)
    return [data.load(f, scale) for f in data.frames(scale)]


def _hints(frames):
    return [f.hints(frames[i - 1] if i else None) for i, f in enumerate(frames)]


def _private_dir() -> Path:
    # Short: a Unix socket path is limited to ~108 bytes (pytest's tmp_path can be longer).
    return Path(tempfile.mkdtemp(prefix="rfb-", dir="/tmp"))


def _start_server(address: str, env=None, user=None) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "reframe_core.cli", "serve", "--address", address],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, user=user, group=user)
    line = process.stdout.readline()
    assert "listening on" in line, process.stderr.read()
    return process


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.terminate()
    _, err = process.communicate(timeout=60)
    return err


@pytest.fixture
def server():
    """A server at a private address: (address, process); stopped (and its stderr checked) afterwards."""
    folder = _private_dir()
    address = str(folder / "s.sock")
    process = _start_server(address)
    yield address, process
    err = _stop(process)
    assert "Traceback" not in err, err
    shutil.rmtree(folder, ignore_errors=True)


def _status(address) -> dict:
    with ServerRuntime(address=address, start=False, timeout=30) as runtime:
        status = runtime.status()
    status["clients"] -= 1  # this probe
    return status


def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _run(session, frames, hints):
    return [session.step(f, h) for f, h in zip(frames, hints)]


def _same(a, b):
    assert np.array_equal(a.image, b.image)
    assert (a.network_ran, a.refreshed, a.reason, a.fallback) == (b.network_ran, b.refreshed, b.reason, b.fallback)


# --- round trips ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("workload,scale,options", [("ss", 2.0, {"policy": "every:2"}),
                                                    ("ss", 2.0, {"policy": "every:4/every:2"}),  # graded refresh
                                                    ("fe", 1.0, {"policy": "every:100", "k": 2})])
def test_real_captured_buffers_give_identical_outputs_through_both_transports(tiny_dataset, tiny_cheap, server,
                                                                            workload, scale, options):
    frames = _frames(tiny_dataset, scale)
    if workload == "fe":  # as Blender renders them: full frames with their cheap pass (relighting), cheap frames
        cheap = _frames(tiny_cheap, scale)
        frames = [replace(f, cheap_color=c.color) if i % 2 == 0 else c for i, (f, c) in enumerate(zip(frames, cheap))]
    hints = _hints(frames)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    local = connect("inprocess").open_session(workload, display_size=size, **options)
    with connect("server", address=server[0], start=False) as runtime:
        remote = runtime.open_session(workload, display_size=size, **options)
        reasons = []
        for f, h in zip(frames, hints):
            assert local.next_render(h) == remote.next_render(h)
            shown = remote.step(f, h)
            _same(local.step(f, h), shown)
            reasons.append(shown.reason)
        if workload == "fe":  # the full frames' cheap pass crossed the bridge: every extrapolated frame was relit
            assert reasons[1::2] and not any("not relit" in r for r in reasons)
        if "/" in options["policy"]:  # the graded spec reached the runtime's cache as one: partial refreshes ran
            assert any(r.startswith("partial: every:2") for r in reasons), reasons
        stats = remote.stats()
        assert stats["frames"] == 6 and stats["runtime"]["transport"] == "server"
        for key in ("network_frames", "refreshes", "hits", "fallbacks"):
            assert stats[key] == local.stats()[key]
        remote.close()
        assert _wait_for(lambda: _status(server[0])["segments"] == [])


def test_two_clients_at_once_keep_separate_caches(tiny_dataset, server):
    frames = _frames(tiny_dataset, 2.0)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    plans = {"a": ("every:2", frames), "b": ("every:3", frames[::-1])}  # other policy, other history
    expected = {name: _run(connect("inprocess").open_session("ss", display_size=size, policy=policy), seq, _hints(seq))
                for name, (policy, seq) in plans.items()}
    got, errors = {}, []
    runtimes = {name: ServerRuntime(address=server[0], start=False) for name in plans}
    sessions = {name: runtimes[name].open_session("ss", display_size=size, policy=plans[name][0]) for name in plans}
    assert _status(server[0])["sessions"] == 2 and _status(server[0])["clients"] == 2

    def client(name):
        try:
            policy, seq = plans[name]
            got[name] = _run(sessions[name], seq, _hints(seq))
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(name,)) for name in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for name in plans:
        assert [r.refreshed for r in got[name]] == [r.refreshed for r in expected[name]]
        for a, b in zip(got[name], expected[name]):
            _same(a, b)
        runtimes[name].close()
    assert _wait_for(lambda: _status(server[0])["sessions"] == 0)


def test_torch_free_client_round_trip(tiny_dataset, server, tmp_path):
    """Blender's Python has numpy but no torch (and no msgspec): the client must not need them."""
    frames = _frames(tiny_dataset, 2.0)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    expected = _run(connect("inprocess").open_session("ss", display_size=size, policy="every:2"), frames, _hints(frames))
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "msgspec", "flip_evaluator"):
            sys.modules[name] = None  # import fails, as in Blender's Python (OpenEXR only reads the test's frames)
        import numpy as np
        from bridge.runtime import connect
        from reframe_core.frames.dataset import Dataset
        data = Dataset.open({str(tiny_dataset)!r})
        frames = [data.load(f, 2.0) for f in data.frames(2.0)]
        with connect("server", address={server[0]!r}, start=False) as runtime:
            session = runtime.open_session("ss", display_size={tuple(size)!r}, policy="every:2")
            images = [session.step(f, f.hints(frames[i - 1] if i else None)).image for i, f in enumerate(frames)]
        np.save({str(tmp_path / "images.npy")!r}, np.stack(images))
        assert not [m for m in sys.modules if m.startswith(("torch", "msgspec")) and sys.modules[m] is not None]
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "images.npy"), np.stack([r.image for r in expected]))


# --- failures ---------------------------------------------------------------------------------------------

def test_server_killed_mid_sequence_is_reported_in_time_falls_back_and_recovers(tiny_dataset):
    frames = _frames(tiny_dataset, 2.0)
    hints = _hints(frames)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    folder = _private_dir()
    timeout = 20.0
    runtime = ServerRuntime(address=str(folder / "s.sock"), python=sys.executable, fallback=True, timeout=timeout)
    try:
        session = runtime.open_session("ss", display_size=size, policy="every:2")
        for f, h in zip(frames[:2], hints[:2]):
            assert session.step(f, h).network_ran
        pid = runtime.info()["server_pid"]
        assert segments.our_segments(pid), "the session's segments exist while it runs"
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        shown = session.step(frames[2], hints[2])
        assert time.monotonic() - start < timeout
        assert shown.fallback and not shown.network_ran and "killed by signal 9" in shown.reason
        from reframe_core.workloads import get_workload

        bicubic = get_workload("ss").baseline(frames[2], size)
        np.testing.assert_allclose(shown.image, bicubic, atol=1e-5)
        # The killed server's resource tracker unlinks what it created.
        assert _wait_for(lambda: segments.our_segments(pid) == []), segments.our_segments(pid)
        # Next call: a new server, the session opened again from scratch, identical to a fresh one from here.
        fresh = connect("inprocess").open_session("ss", display_size=size, policy="every:2")
        for f, h in zip(frames[3:], hints[3:]):
            _same(session.step(f, h), fresh.step(f, h))
        assert runtime.info()["restarts"] == 1 and runtime.info()["server_pid"] != pid
        assert session.stats()["client_fallbacks"] == 1
    finally:
        runtime.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_without_fallback_a_dead_or_hung_server_is_one_clear_error_within_the_timeout(tiny_dataset, server):
    frames = _frames(tiny_dataset, 2.0)
    hints = _hints(frames)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    address, process = server
    runtime = ServerRuntime(address=address, start=False, timeout=3)
    session = runtime.open_session("ss", display_size=size, policy="every:2")
    session.step(frames[0], hints[0])
    os.kill(process.pid, signal.SIGSTOP)  # hung: alive, never answers
    try:
        start = time.monotonic()
        with pytest.raises(ServerUnavailable, match=r"did not answer 'step' within 3 s"):
            session.step(frames[1], hints[1])
        assert time.monotonic() - start < 3 + 2
        with pytest.raises(ServerUnavailable, match="did not answer"):  # the stream is never trusted again
            session.step(frames[1], hints[1])
        assert session.stats()["unavailable"]  # a report can still be written
    finally:
        os.kill(process.pid, signal.SIGCONT)
    runtime.close()


def test_a_killed_client_leaves_no_session_and_no_segment(tiny_dataset, server):
    address, process = server
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    script = textwrap.dedent(f"""
        import sys, time
        from bridge.runtime import connect
        from reframe_core.frames.dataset import Dataset
        data = Dataset.open({str(tiny_dataset)!r})
        frames = [data.load(f, 2.0) for f in data.frames(2.0)]
        session = connect("server", address={address!r}, start=False).open_session(
            "ss", display_size={tuple(size)!r}, policy="every:2")
        session.step(frames[0], frames[0].hints(None))
        print("stepped", flush=True)
        time.sleep(600)
    """)
    client = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "stepped"
    status = _status(address)
    assert status["sessions"] == 1 and len(status["segments"]) == 2  # its output and input segments
    client.kill()
    client.wait()
    assert _wait_for(lambda: _status(address)["sessions"] == 0)
    assert _status(address)["segments"] == [] and segments.our_segments(process.pid) == []
    assert process.poll() is None, "the server stays up"


def test_a_client_that_exits_without_closing_leaves_no_tracker_warning_and_no_segment(tiny_dataset, server):
    """The client only attaches; its resource tracker must not warn about (or unlink) the server's segments, and is
    not even started (inside Blender it would be a process of its own, and Debian's Blender 3.4 with another patch
    release's standard library fails to start it)."""
    address, process = server
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    script = textwrap.dedent(f"""
        from bridge.runtime import connect
        from reframe_core.frames.dataset import Dataset
        data = Dataset.open({str(tiny_dataset)!r})
        frame = data.load(data.frames(2.0)[0], 2.0)
        session = connect("server", address={address!r}, start=False).open_session(
            "ss", display_size={tuple(size)!r}, policy="every:2")
        session.step(frame, frame.hints(None))
        from multiprocessing import resource_tracker
        print("tracker process", resource_tracker._resource_tracker._pid)
    """)  # exits without session.close(): the connection's end closes the session on the server
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr, done.stderr
    assert "tracker process None" in done.stdout, done.stdout
    assert _wait_for(lambda: _status(address)["sessions"] == 0)
    assert segments.our_segments(process.pid) == []


def test_bad_frames_are_the_same_clear_error_through_both_transports_or_a_flagged_fallback(tiny_dataset, server):
    frames = _frames(tiny_dataset, 2.0)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    broken = frames[0]
    broken.color = broken.color.copy()
    broken.color[1, 2, 0] = np.nan
    messages = []
    for runtime in (connect("inprocess"), connect("server", address=server[0], start=False)):
        session = runtime.open_session("ss", display_size=size, policy="every:2")
        with pytest.raises(FrameError, match=r"color holds 1 NaN or infinite") as caught:
            session.step(broken, broken.hints(None))
        messages.append(str(caught.value))
        runtime.fallback = True
        shown = session.step(broken, broken.hints(None))
        assert shown.fallback and np.isfinite(shown.image).all()
        runtime.close()
    assert messages[0] == messages[1]


def test_start_failures_are_clear_and_quick(tmp_path):
    folder = _private_dir()
    try:
        with pytest.raises(ServerUnavailable, match="does not exist"):
            ServerRuntime(address=str(folder / "s.sock"), python=str(tmp_path / "no-python"))
        fake = tmp_path / "python"  # a Python without the project (torch missing, say): the server dies at start
        fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
        fake.chmod(0o755)
        start = time.monotonic()
        with pytest.raises(ServerUnavailable, match=r"(?s)exited with code 3.*No module named torch"):
            ServerRuntime(address=str(folder / "s.sock"), python=str(fake), start_timeout=60)
        assert time.monotonic() - start < 30, "a server that dies at start is reported at once, not at the deadline"
        with pytest.raises(ServerUnavailable, match="no runtime server"):
            ServerRuntime(address=str(folder / "s.sock"), start=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_version_mismatch_at_the_handshake_names_both_versions(server, monkeypatch):
    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", 99)
    with pytest.raises(RemoteError, match=r"client speaks version 99, this server version 1"):
        ServerRuntime(address=server[0], start=False)
    # A newer client's hello carries fields this server does not know: still the versions, not a schema error.
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(server[0])
        protocol.send_message(raw, {"op": "hello", "version": 2, "features": ["graded-refresh"]})
        reply = protocol.receive_reply(raw)
    assert not reply["ok"] and "client speaks version 2, this server version 1" in reply["error"]


def test_a_frame_with_nan_in_its_camera_is_the_frames_fault_not_a_dead_server(tiny_dataset, server):
    import dataclasses

    frames = _frames(tiny_dataset, 2.0)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    with ServerRuntime(address=server[0], start=False) as runtime:
        session = runtime.open_session("ss", display_size=size, policy="every:2")
        broken = dataclasses.replace(frames[0], camera=dataclasses.replace(frames[0].camera, lens_mm=float("nan")))
        with pytest.raises(FrameError, match="NaN or infinite"):
            session.step(broken)
        assert session.step(frames[0], frames[0].hints(None)).network_ran  # same connection, same server
        assert runtime.info()["restarts"] == 0 and not runtime.broken


def test_the_server_never_replaces_a_file_that_is_not_a_socket(tmp_path):
    from bridge.server import Server

    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    with pytest.raises(BridgeError, match="is not a socket"):
        Server(str(notes)).bind()
    assert notes.read_text() == "keep me"


def test_release_returns_the_servers_memory_and_the_next_frame_starts_it_again(tiny_dataset):
    frames = _frames(tiny_dataset, 2.0)
    hints = _hints(frames)
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    folder = _private_dir()
    runtime = ServerRuntime(address=str(folder / "s.sock"), python=sys.executable)
    try:
        session = runtime.open_session("ss", display_size=size, policy="every:2")
        session.step(frames[0], hints[0])
        process, pid = runtime.process, runtime.info()["server_pid"]
        assert runtime.release()["server_stopped"]
        assert process.poll() is not None and segments.our_segments(pid) == []
        fresh = connect("inprocess").open_session("ss", display_size=size, policy="every:2")
        _same(session.step(frames[1], hints[1]), fresh.step(frames[1], hints[1]))
        assert runtime.info()["server_pid"] != pid
        runtime.release()  # and a new session after a release (the add-on's next render)
        assert runtime.open_session("ss", display_size=size, policy="every:2").step(frames[0], hints[0]).network_ran
    finally:
        runtime.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_release_on_a_shared_server_closes_only_this_clients_sessions(tiny_dataset, server):
    size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
    mine, other = (ServerRuntime(address=server[0], start=False) for _ in range(2))
    mine.open_session("ss", display_size=size, policy="every:2")
    other.open_session("ss", display_size=size, policy="every:2")
    assert mine.release()["closed"] == 1
    assert _status(server[0])["sessions"] == 1
    mine.close()
    other.close()


# --- security ---------------------------------------------------------------------------------------------

def test_socket_is_0600_in_a_0700_runtime_folder_and_a_foreign_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = protocol.runtime_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    process = _start_server(protocol.default_address(), env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})
    try:
        assert stat.S_IMODE(os.stat(protocol.default_address()).st_mode) == 0o600
    finally:
        _stop(process)
    folder.chmod(0o755)  # others may enter: someone could swap the socket
    with pytest.raises(BridgeError, match="not a private folder"):
        protocol.runtime_dir()
    folder.chmod(0o700)
    if os.getuid() == 0:
        os.chown(folder, NOBODY, NOBODY)  # created by another user to intercept frames
        with pytest.raises(BridgeError, match="owner uid 65534"):
            protocol.runtime_dir()


def _fork_as_nobody(work) -> int:
    """The pid of a forked child that became uid/gid 65534 and runs ``work()`` (exit status: its result). A
    fork, not a new interpreter: the project's Python may live in a folder that user cannot enter."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = work()
        finally:
            os._exit(code)
    return pid


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as a second user")
def test_another_user_cannot_connect(server):
    """The folder's 0700 and the socket's 0600 keep another user out before any byte is read."""
    def probe():
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(server[0])
            except PermissionError:
                return 0
            return 3

    pid = _fork_as_nobody(probe)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "another user connected"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a server as a second user")
def test_the_server_checks_the_peers_uid():
    """Root passes any file permission: only the SO_PEERCRED checks refuse it at a nobody's server."""
    from bridge.server import Server

    folder = _private_dir()
    os.chown(folder, NOBODY, NOBODY)
    address, log = str(folder / "s.sock"), folder / "log.txt"

    def serve():
        server = Server(address, log=lambda text: log.open("a").write(text + "\n"))
        server.bind()
        server.serve_forever()
        return 0

    pid = _fork_as_nobody(serve)
    try:
        assert _wait_for(lambda: Path(address).exists(), 30)
        with socket.socket(socket.AF_UNIX) as raw:  # past the client's own check (below)
            raw.connect(address)
            protocol.send_message(raw, {"op": "hello", "version": protocol.PROTOCOL_VERSION})
            reply = protocol.receive_reply(raw)
        assert not reply["ok"] and "your uid 0 is not this server's uid 65534" in reply["error"]
        assert "refused a connection from uid 0" in log.read_text()
        # Both ends check: the client does not hand frames to another user's server either.
        with pytest.raises(BridgeError, match="runs as uid 65534, not as this user"):
            ServerRuntime(address=address, start=False)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        shutil.rmtree(folder, ignore_errors=True)


def test_loopback_tcp_needs_the_token(tiny_dataset, tmp_path, monkeypatch):
    """Where Unix sockets are missing: TCP on 127.0.0.1 only, a random token in a 0600 file."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    process = _start_server("tcp", env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})
    try:
        token_file = protocol.runtime_dir() / protocol.TCP_FILE
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        import json

        port = json.loads(token_file.read_text())["port"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            protocol.send_message(raw, {"op": "hello", "version": protocol.PROTOCOL_VERSION, "token": "guess"})
            reply = protocol.receive_reply(raw)
            assert not reply["ok"] and "token" in reply["error"]
            assert raw.recv(1) == b"", "the server closes a connection with a wrong token"
        with ServerRuntime(address="tcp", start=False) as runtime:
            size = Dataset.open(tiny_dataset).load(3).color.shape[:2]
            frame = _frames(tiny_dataset, 2.0)[0]
            assert runtime.open_session("ss", display_size=size).step(frame, frame.hints(None)).network_ran
    finally:
        _stop(process)


def test_bench_bridge_reports_the_transport_and_the_soak(tmp_path):
    """The benchmark's command at a tiny size (its figures are in README): fields, no segment left."""
    import json

    from reframe_core.cli import main

    folder = _private_dir()
    try:
        out = tmp_path / "bench.json"
        assert main(["bench-bridge", "--size", "32x32", "--frames", "2", "--soak", "40", "--soak-size", "32",
                     "--address", str(folder / "s.sock"), "--quiet", "--out", str(out)]) == 0
        report = json.loads(out.read_text())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    trip, soak = report["round_trip"], report["soak"]
    assert trip["low_res"] == [16, 16] and len(trip["transport_ms"]) == 2 and trip["transport_ms_median"] > 0
    assert soak["segments_during"] == 2 and soak["segments_left_after_close"] == []
    assert len(soak["rss_mb_samples"]) == 5 and soak["rss_mb_min"] > 0  # frames 4, 14, 24, 34 and the last
