"""train.tensorboard: the metrics rows also go to TensorBoard (the writer is faked; tensorboard need not be installed)."""
import csv

import pytest

from videojepa.cli import main
from videojepa.config import load_config
from videojepa.training import metrics
from videojepa.training.metrics import TENSORBOARD_MISSING, MetricsLog
from videojepa.training.trainer import Pretrainer


class FakeWriter:
    instances: list = []

    def __init__(self, log_dir, purge_step):
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: list[tuple[str, float, int]] = []
        self.flushed = 0
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, global_step):
        self.scalars.append((tag, value, global_step))

    def flush(self):
        self.flushed += 1

    def close(self):
        pass


@pytest.fixture
def fake_tb(monkeypatch):
    FakeWriter.instances = []
    monkeypatch.setattr(metrics, "tensorboard_available", lambda: True)
    monkeypatch.setattr(metrics, "_summary_writer", FakeWriter)
    return FakeWriter


def test_missing_tensorboard_fails_at_start_with_the_pip_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(metrics, "tensorboard_available", lambda: False)
    cfg, _ = load_config("cpu_test", ["train.tensorboard=true", "train.max_steps=1"])
    with pytest.raises(RuntimeError) as e:
        Pretrainer(cfg, tmp_path / "run", progress=False)
    assert str(e.value) == "train.tensorboard=true needs the tensorboard package: pip install tensorboard"
    assert not (tmp_path / "run").exists()
    rc = main(["pretrain", "--config", "cpu_test", "--out", str(tmp_path / "cli"), "--no-progress", "train.tensorboard=true"])
    assert rc == 1 and TENSORBOARD_MISSING in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="pip install tensorboard"):
        MetricsLog(tmp_path / "m.csv", tensorboard_dir=tmp_path / "tb")


def test_off_by_default_writes_nothing(tmp_path, fake_tb):
    cfg, _ = load_config("cpu_test", ["train.max_steps=1"])
    assert cfg.train.tensorboard is False
    Pretrainer(cfg, tmp_path, progress=False).fit()
    assert fake_tb.instances == [] and not (tmp_path / "tensorboard").exists()


def test_every_row_is_written_as_scalars_and_resume_purges(tmp_path, fake_tb):
    over = ["train.tensorboard=true", "train.max_steps=3", "train.checkpoint_every=2", "train.diag_every=2"]
    cfg, _ = load_config("cpu_test", over)
    Pretrainer(cfg, tmp_path, progress=False).fit(until=2)
    w = fake_tb.instances[-1]
    assert w.log_dir == tmp_path / "tensorboard" and w.purge_step is None
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 2
    for r in rows:
        step = int(r["step"])
        got = {tag: v for tag, v, s in w.scalars if s == step}
        want = {k: float(v) for k, v in r.items() if k != "step" and v != ""}
        assert set(got) == set(want), step
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-5), (step, k)
    assert "target_erank" in {t for t, _, s in w.scalars if s == 1}  # the diagnostics row
    assert w.flushed == 2
    # resume: a new writer that purges the events from the resumed step on, and continues
    Pretrainer(cfg, tmp_path, progress=False).fit()
    w2 = fake_tb.instances[-1]
    assert w2 is not w and w2.purge_step == 2
    assert {s for _, _, s in w2.scalars} == {2}
