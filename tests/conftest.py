import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VIDEOJEPA_CPU_BF16", "0")  # float32 on every CPU: the suite's expected floats; tests of the choice unset it
# torchrun tests inherit it: a rank stuck in a collective fails the run in 2 min instead of gloo's 30
os.environ.setdefault("VIDEOJEPA_DIST_TIMEOUT", "120")

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)  # only for module init inside tests; the package itself never uses global RNG
    yield


@pytest.fixture
def one_thread():
    """Tests of many tiny ops: one intra-op thread is much faster on a shared CPU (no spin waits)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def enc():
    """A tiny encoder (vit_test: 32 wide, 2 blocks, 4 x 16 x 16 clips, 2 x 4 x 4 tokens), the same init each time."""
    import videojepa

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return videojepa.create_model("vit_test").eval()


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc; torchrun starts its ranks in sessions of their own, so a
    signal to the launcher's process group misses them)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def launch_bounded(cmd: list[str], timeout: float, env: dict | None = None):
    """Run ``cmd`` (e.g. ``torchrun``) to the end, or for ``timeout`` seconds at most: then every process of its
    tree prints its Python stack (SIGABRT with PYTHONFAULTHANDLER) and is killed, and the test fails with what they
    printed. Returns the ``CompletedProcess``."""
    import signal
    import subprocess

    env = {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = [p.pid, *_descendants(p.pid)]
        for sig in (signal.SIGABRT, signal.SIGKILL):
            for pid in tree:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                out, err = p.communicate(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            out, err = "", "(its output could not be read)"
        raise AssertionError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n{out[-2000:]}\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


@pytest.fixture(scope="session")
def launch():
    """:func:`launch_bounded`, for tests that start process trees."""
    return launch_bounded
