"""CUDA MPS (Multi-Process Service) for worker processes that share a GPU.

Without MPS a GPU time-slices between processes: one process's kernels never run beside another's. A small net
launches thousands of tiny kernels per second, so time-sliced processes stop gaining at ~8; under MPS their kernels
share the SMs (RESULTS.md, "On a GPU"). So when a run puts more than one worker on a GPU, nas-run uses the MPS server
this user already runs (CUDA_MPS_PIPE_DIRECTORY set, or the default pipe) or starts a private one for the run
(its own pipe and log folders, quit when the run ends). Where none can start (no nvidia-cuda-mps-control, a GPU in
exclusive mode, another user's server) the workers time-slice the GPU and the run says so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

DEFAULT_PIPE = Path("/tmp/nvidia-mps")
PROBE = "import torch; torch.ones(1, device='cuda').add_(1); torch.cuda.synchronize()"


@contextmanager
def shared_gpu(gpus: int, workers: int, say=print):
    """Run the body with MPS serving the worker processes it starts (they inherit the environment) when `workers`
    are more than the `gpus` they run on. Yields how a GPU is shared: "MPS (running server)", "MPS (started for
    this run)", "time-sliced", or "" (no GPU, or one worker per GPU)."""
    if not gpus or workers <= gpus:
        yield ""
        return
    if os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or (DEFAULT_PIPE / "control").exists():
        yield "MPS (running server)"
        return
    exe = shutil.which("nvidia-cuda-mps-control")
    folder = Path(tempfile.mkdtemp(prefix="nas-run-mps-"))
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}
    why = _start(exe, env) if exe else "nvidia-cuda-mps-control is not on PATH"
    if why:
        shutil.rmtree(folder, ignore_errors=True)
        say(f"MPS could not start ({why}): {workers} workers time-slice the GPU (about half the images/s)")
        yield "time-sliced"
        return
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield "MPS (started for this run)"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _quit(exe, env)
        shutil.rmtree(folder, ignore_errors=True)


def _start(exe: str, env: dict) -> str:
    """Start the control daemon and check that a CUDA process runs under it -> "" or why not."""
    for path in env.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    full = {**os.environ, **env}
    try:
        r = subprocess.run([exe, "-d"], env=full, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return f"{exe} -d exited with {r.returncode}: {(r.stderr or r.stdout).strip()[:200]}"
        probe = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        _quit(exe, env)
        return str(e)
    if probe.returncode != 0:
        _quit(exe, env)
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return f"a CUDA process failed under it: {last[:200]}"
    servers = subprocess.run([exe], input="get_server_list\n", env=full, capture_output=True, text=True, timeout=30)
    if not servers.stdout.strip():  # the probe ran, but not under MPS
        _quit(exe, env)
        return "no MPS server started for a CUDA process"
    return ""


def _quit(exe: str, env: dict) -> None:
    try:
        subprocess.run([exe], input="quit\n", env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
