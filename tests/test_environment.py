"""The add-on's runtime environment (blender_addon.environment): probing a Python for what it can run, and
creating one with pip, step by step with progress and a clear error. Real subprocesses, no network."""
import shutil
import sys
from pathlib import Path

import pytest

from blender_addon.environment import RuntimeEnvironmentError, SetupJob, probe, site_folders


def test_probe_reports_torch_device_and_weights():
    found = probe(sys.executable, "cpu")
    assert found["ok"], found
    assert found["torch"].startswith("2.") and found["device"] == "cpu fp32"
    assert {"ss_x2", "fe_extranet"} <= set(found["weights"])


def test_probe_names_what_is_missing():
    system = shutil.which("python3.11") or "/usr/bin/python3"
    if not Path(system).exists() or Path(system).resolve() == Path(sys.executable).resolve():
        pytest.skip("no second Python here")
    found = probe(system, "cpu")
    if found.get("ok"):
        pytest.skip(f"{system} has torch")
    assert not found["ok"] and "torch cannot be imported by " in found["reason"] and "pip install torch==2.13.0" in found["reason"]
    assert "does not exist" in pytest.raises(RuntimeEnvironmentError, probe, "/nonexistent/python").value.args[0]
    assert probe(sys.executable, "cuda:7")["reason"].startswith("device 'cuda:7' is not usable here")


def test_site_folders_of_this_environment():
    version, folders = site_folders(sys.executable)
    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert any(Path(f).samefile(Path(__import__("torch").__file__).parents[1]) for f in folders if Path(f).exists())


def test_setup_creates_an_environment_and_fails_clearly(tmp_path):
    # pip that cannot find a requirement (offline: --no-index): the step's name, the exit code and pip's words
    job = SetupJob(tmp_path / "env", requirements=("reframe-no-such-package==0.0.1",), pip_args=("--no-index",))
    assert job.progress == 0.0 and job.title == "creating the environment"
    with pytest.raises(RuntimeEnvironmentError) as failed:
        job.run(interval=0.05)
    message = str(failed.value)
    assert message.startswith("installing the other requirements failed (exit code 1)")
    assert "reframe-no-such-package" in message and str(job.log_path) in message
    # the environment itself was made (a real venv whose python runs); only the install failed
    assert job.python.exists() and job.index == 1 and job.progress == 0.5
    assert "creating the environment" not in message
