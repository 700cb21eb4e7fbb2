"""Two gloo ranks on CPU against one process: same data, same masks, same parameters."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from videojepa.training.checkpoint import find_latest, load_checkpoint

pytestmark = pytest.mark.slow

COMMON = ["--config", "cpu_test", "--no-progress", "optim.schedule_steps=4", "train.checkpoint_every=2",
          "train.keep_checkpoints=5", "optim.clip_grad=1.0"]


def _run(out, nproc, batch, steps, *extra):
    if nproc == 1:
        cmd = [sys.executable, "-m", "videojepa", "pretrain"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "videojepa", "pretrain"]
    cmd += ["--out", str(out), "--max-steps", str(steps), *COMMON, f"data.batch_size={batch}", *extra]
    # own process group, so that a timeout kills every rank (no orphan left waiting in a collective)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        out, err = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"timed out: {' '.join(cmd)}\n{err[-3000:]}")
    r = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _params(folder, step):
    sd = load_checkpoint(folder / "checkpoints" / f"step_{step:08d}.pt")
    return {f"{part}.{k}": v for part in ("encoder", "predictor", "target_encoder") for k, v in sd[part].items()}


def _close(a, b, tol=1e-5):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= tol, worst


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    _run(out, 1, 8, 4)
    return out


def test_two_ranks_equal_one_process_with_double_batch(single, tmp_path):
    r = _run(tmp_path, 2, 4, 4)
    assert r.stdout.count("done: 4 steps") == 1  # only rank 0 reports
    _close(_params(tmp_path, 4), _params(single, 4))
    # the metrics (loss averaged over ranks) match too
    a = (tmp_path / "metrics.csv").read_text().splitlines()[1:]
    b = (single / "metrics.csv").read_text().splitlines()[1:]
    la = [float(x.split(",")[1]) for x in a]
    lb = [float(x.split(",")[1]) for x in b]
    assert la == pytest.approx(lb, abs=1e-5)


def test_resume_two_ranks_to_one_process(single, tmp_path):
    _run(tmp_path, 2, 4, 2)
    assert find_latest(tmp_path / "checkpoints").name == "step_00000002.pt"
    r = _run(tmp_path, 1, 8, 4)
    assert "resuming from" in r.stderr
    _close(_params(tmp_path, 4), _params(single, 4))


def test_resume_one_process_to_two_ranks(single, tmp_path):
    _run(tmp_path, 1, 8, 2)
    _run(tmp_path, 2, 4, 4)
    _close(_params(tmp_path, 4), _params(single, 4))


def _params_any(folder, step):
    """Parameters of a consolidated or sharded checkpoint, read in this (single) process."""
    from videojepa.training.checkpoint import list_checkpoints
    from videojepa.training.trainer import read_checkpoint

    path = dict(list_checkpoints(folder / "checkpoints"))[step]
    sd = read_checkpoint(path)
    return {f"{part}.{k}": v for part in ("encoder", "predictor", "target_encoder") for k, v in sd[part].items()}


def test_fsdp_two_ranks_equal_one_process(single, tmp_path):
    _run(tmp_path, 2, 4, 4, "--parallel", "fsdp")
    ck = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ck == ["step_00000002.dcp", "step_00000004.dcp"]
    _close(_params_any(tmp_path, 4), _params(single, 4))


def test_fsdp_checkpoint_resumes_in_one_process_and_back(single, tmp_path):
    _run(tmp_path, 2, 4, 2, "--parallel", "fsdp")
    r = _run(tmp_path, 1, 8, 3)  # sharded -> one process
    assert "step_00000002.dcp" in r.stderr
    _run(tmp_path, 2, 4, 4, "--parallel", "fsdp")  # consolidated -> sharded
    _close(_params_any(tmp_path, 4), _params(single, 4))


def test_gradient_accumulation_across_ranks(tmp_path):
    """2 ranks x batch 2 x 2 micro-batches == 1 process x batch 4 x 2 micro-batches (DDP no_sync on the first)."""
    _run(tmp_path / "one", 1, 4, 2, "optim.grad_accum=2")
    _run(tmp_path / "two", 2, 2, 2, "optim.grad_accum=2")
    _close(_params(tmp_path / "two", 2), _params(tmp_path / "one", 2))


def test_collective_timeout_reads_the_environment(monkeypatch):
    from datetime import timedelta

    from videojepa.training.distributed import collective_timeout

    monkeypatch.delenv("VIDEOJEPA_DIST_TIMEOUT", raising=False)
    assert collective_timeout() is None
    monkeypatch.setenv("VIDEOJEPA_DIST_TIMEOUT", "90")
    assert collective_timeout() == timedelta(seconds=90)
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv("VIDEOJEPA_DIST_TIMEOUT", bad)
        with pytest.raises(ValueError, match=f"VIDEOJEPA_DIST_TIMEOUT.*{bad}"):
            collective_timeout()
