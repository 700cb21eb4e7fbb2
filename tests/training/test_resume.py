"""Stop after step k, resume, and reach the same parameters at step n as an uninterrupted run."""
import math

import pytest
import torch

from videojepa.config import load_config
from videojepa.training.checkpoint import find_latest, list_checkpoints, load_checkpoint
from videojepa.training.trainer import NonFiniteLossError, Pretrainer


def _cfg(*over):
    cfg, _ = load_config("cpu_test", list(over))
    return cfg


def _params(tr):
    return {f"{k}.{n}": p.detach().clone() for k, m in (("enc", tr.model.encoder), ("pred", tr.model.predictor),
                                                         ("tgt", tr.model.target_encoder)) for n, p in m.state_dict().items()}


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_matches_uninterrupted(tmp_path, accum):
    over = [f"optim.grad_accum={accum}", "train.max_steps=6", "train.checkpoint_every=3"]
    full = Pretrainer(_cfg(*over), tmp_path / "full", progress=False)
    full.fit()
    a = _params(full)

    part = Pretrainer(_cfg(*over), tmp_path / "part", progress=False)
    part.fit(until=3)  # as if the process had been killed after the checkpoint of step 3
    assert find_latest(tmp_path / "part" / "checkpoints").name == "step_00000003.pt"
    resumed = Pretrainer(_cfg(*over), tmp_path / "part", progress=False)
    assert resumed.step == 3 and resumed.resumed_from is not None
    resumed.fit()
    b = _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the metrics CSV continues without duplicated steps
    rows = (tmp_path / "part" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(6))


def test_different_seed_gives_different_run(tmp_path):
    a = Pretrainer(_cfg("train.max_steps=2"), tmp_path / "a", progress=False)
    a.fit()
    b = Pretrainer(_cfg("train.max_steps=2", "train.seed=1"), tmp_path / "b", progress=False)
    b.fit()
    assert not torch.equal(a.model.encoder.blocks[0].attn.qkv.weight, b.model.encoder.blocks[0].attn.qkv.weight)


def test_checkpoint_contents_and_rotation(tmp_path):
    tr = Pretrainer(_cfg("train.max_steps=6", "train.checkpoint_every=2", "train.keep_checkpoints=2"), tmp_path, progress=False)
    s = tr.fit()
    ck = list_checkpoints(tmp_path / "checkpoints")
    assert [k for k, _ in ck] == [4, 6]
    sd = load_checkpoint(ck[-1][1])
    assert {"encoder", "predictor", "target_encoder", "optimizer", "step", "config", "data"} <= set(sd)
    assert sd["step"] == 6
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    for f in ("config.yaml", "metrics.csv", "metrics.png", "summary.json"):
        assert (tmp_path / f).is_file(), f
    assert s["steps"] == 6 and math.isfinite(s["loss_last"])


def test_resume_refuses_other_architecture(tmp_path):
    Pretrainer(_cfg("train.max_steps=2"), tmp_path, progress=False).fit()
    with pytest.raises(ValueError, match="predictor"):
        Pretrainer(_cfg("train.max_steps=4", "predictor.depth=3"), tmp_path, progress=False)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    tr = Pretrainer(_cfg("train.max_steps=4", "train.checkpoint_every=2"), tmp_path, progress=False)
    tr.fit()
    good = load_checkpoint(find_latest(tmp_path / "checkpoints"))
    bad = Pretrainer(_cfg("train.max_steps=8", "train.checkpoint_every=1"), tmp_path, progress=False)
    with torch.no_grad():
        bad.model.encoder.norm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"step 4.*step_00000004\.pt"):
        bad.fit()
    assert find_latest(tmp_path / "checkpoints").name == "step_00000004.pt"
    after = load_checkpoint(find_latest(tmp_path / "checkpoints"))
    assert torch.equal(after["encoder"]["norm.weight"], good["encoder"]["norm.weight"])


class _Flaky(torch.utils.data.Dataset):
    """Every k-th sample is unreadable (k=None: all of them)."""

    def __init__(self, base, k):
        self.base, self.k = base, k

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        from videojepa.data.errors import SkippedSample

        if self.k is None or i % self.k == 0:
            return SkippedSample(index=i, path=f"/videos/clip_{i}.mp4", reason="moov atom not found")
        return self.base[i]


def _flaky_trainer(tmp_path, k, *over):
    import videojepa.training.trainer as T

    tr = Pretrainer(_cfg("train.max_steps=20", *over), tmp_path, progress=False)
    base = T.build_dataset(tr.cfg)
    orig = T.build_dataset
    T.build_dataset = lambda cfg, split="train": _Flaky(base, k)
    return tr, lambda: setattr(T, "build_dataset", orig)


def test_unreadable_samples_are_skipped_counted_and_named(tmp_path):
    tr, restore = _flaky_trainer(tmp_path, 2, "train.max_steps=4", "data.max_failure_rate=1.0")
    try:
        s = tr.fit()
    finally:
        restore()
    assert s["data"]["samples_skipped"] >= 1
    assert s["data"]["samples_ok"] + s["data"]["samples_skipped"] == 16
    assert all(p.startswith("/videos/clip_") for p in s["data"]["skipped_files"])


def test_failure_rate_threshold_stops_the_run(tmp_path):
    from videojepa.training.trainer import DataFailureError

    tr, restore = _flaky_trainer(tmp_path, 3, "data.max_failure_rate=0.1")
    try:
        with pytest.raises(DataFailureError, match=r"could not be read.*max_failure_rate=10%.*clip_"):
            tr.fit()
    finally:
        restore()


def test_nothing_readable_stops_at_once(tmp_path):
    from videojepa.training.trainer import DataFailureError

    tr, restore = _flaky_trainer(tmp_path, None)
    try:
        with pytest.raises(DataFailureError, match="no sample could be read"):
            tr.fit()
    finally:
        restore()


def test_auto_dtype_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    """``train.dtype=auto``: bf16 autocast on CUDA and on CPUs with AMX / AVX512-BF16, float32 on the rest (and
    whenever ``VIDEOJEPA_CPU_BF16=0``); the reason is stated."""
    from videojepa.training import engine

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("VIDEOJEPA_CPU_BF16", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    dt, why = engine.choose_dtype("auto", cpu)
    assert dt == torch.float32 and "no native bf16" in why
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    dt, why = engine.choose_dtype("auto", cpu)
    assert dt == torch.bfloat16 and "AVX512-BF16" in why
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert "AMX" in engine.choose_dtype("auto", cpu)[1]
    assert engine.choose_dtype("float32", cpu)[0] == torch.float32  # an explicit choice is kept
    assert engine.choose_dtype("auto", cuda)[0] == torch.bfloat16
    monkeypatch.setenv("VIDEOJEPA_CPU_BF16", "0")
    assert engine.choose_dtype("auto", cpu)[0] == torch.float32


def test_auto_dtype_resumes_with_the_checkpoints_arithmetic(tmp_path, monkeypatch):
    """A run started where "auto" meant bf16 resumes in bf16 on a machine where it means float32 (and says so);
    the summary names the dtype and why."""
    from videojepa.training import engine

    monkeypatch.delenv("VIDEOJEPA_CPU_BF16", raising=False)
    monkeypatch.setattr(engine, "native_bf16", lambda: "AMX")
    over = ["train.max_steps=2", "train.checkpoint_every=1", "train.dtype=auto"]
    first = Pretrainer(_cfg(*over), tmp_path, progress=False)
    assert first.dtype == torch.bfloat16
    first.fit(until=1)
    assert load_checkpoint(find_latest(tmp_path / "checkpoints"))["dtype"] == "bfloat16"
    monkeypatch.setattr(engine, "native_bf16", lambda: None)
    again = Pretrainer(_cfg(*over), tmp_path, progress=False)
    assert again.step == 1 and again.dtype == torch.bfloat16 and "as the checkpoint ran" in again.dtype_note
    s = again.fit()
    assert s["dtype"] == "bfloat16" and "float32" in s["dtype_note"]
    fresh = Pretrainer(_cfg(*over), tmp_path / "fresh", progress=False)
    assert fresh.dtype == torch.float32
