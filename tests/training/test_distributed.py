"""Two gloo ranks on CPU against one process: same data, same masks, same parameters."""
import os
import sys

import pytest

from videojepa.training.checkpoint import find_latest, load_checkpoint

pytestmark = pytest.mark.slow

COMMON = ["--config", "cpu_test", "--no-progress", "optim.schedule_steps=4", "train.checkpoint_every=2",
          "train.keep_checkpoints=5", "optim.clip_grad=1.0"]


_TIMED_OUT: list[str] = []  # a launch that hung: the later ones fail at once instead of waiting 5 min each


@pytest.fixture(scope="module")
def run(launch):
    """``run(out, nproc, batch, steps, *overrides)``: ``videojepa pretrain`` in one process or under torchrun."""
    def _run(out, nproc, batch, steps, *extra):
        if _TIMED_OUT:
            pytest.fail(f"not launched: an earlier run of this module timed out ({_TIMED_OUT[0]})")
        if nproc == 1:
            cmd = [sys.executable, "-m", "videojepa", "pretrain"]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "videojepa", "pretrain"]
        cmd += ["--out", str(out), "--max-steps", str(steps), *COMMON, f"data.batch_size={batch}", *extra]
        try:
            r = launch(cmd, 300, {**os.environ, "OMP_NUM_THREADS": "1"})
        except AssertionError:
            _TIMED_OUT.append(" ".join(cmd[1:5]))
            raise
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r
    return _run


def _params(folder, step):
    sd = load_checkpoint(folder / "checkpoints" / f"step_{step:08d}.pt")
    return {f"{part}.{k}": v for part in ("encoder", "predictor", "target_encoder") for k, v in sd[part].items()}


def _close(a, b, tol=1e-5):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= tol, worst


@pytest.fixture(scope="module")
def single(tmp_path_factory, run):
    out = tmp_path_factory.mktemp("single")
    run(out, 1, 8, 4)
    return out


def test_two_ranks_equal_one_process_with_double_batch(single, tmp_path, run):
    r = run(tmp_path, 2, 4, 4)
    assert r.stdout.count("done: 4 steps") == 1  # only rank 0 reports
    _close(_params(tmp_path, 4), _params(single, 4))
    # the metrics (loss averaged over ranks) match too
    a = (tmp_path / "metrics.csv").read_text().splitlines()[1:]
    b = (single / "metrics.csv").read_text().splitlines()[1:]
    la = [float(x.split(",")[1]) for x in a]
    lb = [float(x.split(",")[1]) for x in b]
    assert la == pytest.approx(lb, abs=1e-5)


def test_resume_two_ranks_to_one_process(single, tmp_path, run):
    run(tmp_path, 2, 4, 2)
    assert find_latest(tmp_path / "checkpoints").name == "step_00000002.pt"
    r = run(tmp_path, 1, 8, 4)
    assert "resuming from" in r.stderr
    _close(_params(tmp_path, 4), _params(single, 4))


def test_resume_one_process_to_two_ranks(single, tmp_path, run):
    run(tmp_path, 1, 8, 2)
    run(tmp_path, 2, 4, 4)
    _close(_params(tmp_path, 4), _params(single, 4))


def _params_any(folder, step):
    """Parameters of a consolidated or sharded checkpoint, read in this (single) process."""
    from videojepa.training.checkpoint import list_checkpoints
    from videojepa.training.trainer import read_checkpoint

    path = dict(list_checkpoints(folder / "checkpoints"))[step]
    sd = read_checkpoint(path)
    return {f"{part}.{k}": v for part in ("encoder", "predictor", "target_encoder") for k, v in sd[part].items()}


def test_fsdp_two_ranks_equal_one_process(single, tmp_path, run):
    run(tmp_path, 2, 4, 4, "--parallel", "fsdp")
    ck = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ck == ["step_00000002.dcp", "step_00000004.dcp"]
    _close(_params_any(tmp_path, 4), _params(single, 4))


def test_fsdp_checkpoint_resumes_in_one_process_and_back(single, tmp_path, run):
    run(tmp_path, 2, 4, 2, "--parallel", "fsdp")
    r = run(tmp_path, 1, 8, 3)  # sharded -> one process
    assert "step_00000002.dcp" in r.stderr
    run(tmp_path, 2, 4, 4, "--parallel", "fsdp")  # consolidated -> sharded
    _close(_params_any(tmp_path, 4), _params(single, 4))


def test_gradient_accumulation_across_ranks(tmp_path, run):
    """2 ranks x batch 2 x 2 micro-batches == 1 process x batch 4 x 2 micro-batches (DDP no_sync on the first)."""
    run(tmp_path / "one", 1, 4, 2, "optim.grad_accum=2")
    run(tmp_path / "two", 2, 2, 2, "optim.grad_accum=2")
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


def test_a_hung_launch_is_killed_with_every_rank(tmp_path, launch):
    """torchrun starts its ranks in sessions of their own: a timeout must reach them too (else they hold the
    output pipes and the test waits forever), and say where each one was waiting."""
    script = tmp_path / "hang.py"
    script.write_text("import os, time\n"
                      f"open(r'{tmp_path}' + '/pid' + os.environ['RANK'], 'w').write(str(os.getpid()))\n"
                      "import torch.distributed as dist\ndist.init_process_group('gloo')\n"
                      "if int(os.environ['RANK']) == 0:\n    time.sleep(600)\ndist.barrier()\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    with pytest.raises(AssertionError, match="timed out after 20 s") as e:
        launch(cmd, 20, {**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Fatal Python error: Aborted" in str(e.value)  # the stacks (which one is last depends on timing)
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in (0, 1)]
    for pid in pids:  # both ranks are gone (or zombies of init)
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
