import json
import subprocess
import sys

import pytest

from videojepa.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "pretrain" in out and "models" in out


def test_pretrain_help(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert "--max-steps" in out and "--resume" in out and "key=value" in out


def test_models_and_list_configs(capsys):
    assert main(["models"]) == 0
    assert "vit_giant" in capsys.readouterr().out
    assert main(["pretrain", "--list-configs"]) == 0
    assert "cpu_demo" in capsys.readouterr().out


def test_bad_override_is_a_clear_error(capsys):
    assert main(["pretrain", "--config", "cpu_test", "optim.lrr=1"]) == 2
    assert "lrr" in capsys.readouterr().err


def test_print_config(capsys):
    assert main(["pretrain", "--config", "cpu_test", "--print-config", "optim.lr=0.5"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out


def test_pretrain_end_to_end_and_resume(tmp_path):
    """The console script trains, writes the run directory, and resumes automatically."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "videojepa", "pretrain", "--config", "cpu_test", "--out", str(out), "--no-progress"]
    r = subprocess.run(cmd + ["--max-steps", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "done: 3 steps" in r.stdout
    r = subprocess.run(cmd + ["--max-steps", "5"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr and "step 3" in r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 5 and s["resumed_from"].endswith("step_00000003.pt")
    assert (out / "metrics.png").stat().st_size > 10_000


def test_load_api(tmp_path):
    import torch

    import videojepa

    assert main(["pretrain", "--config", "cpu_test", "--out", str(tmp_path), "--no-progress", "--max-steps", "2"]) == 0
    ck = tmp_path / "checkpoints" / "step_00000002.pt"
    enc = videojepa.load(ck)
    tgt_sd = torch.load(ck, weights_only=True)["target_encoder"]
    assert all(torch.equal(v, tgt_sd[k]) for k, v in enc.state_dict().items())
    pred = videojepa.load(ck, part="predictor")
    assert len(pred.mask_tokens) == 2
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 4, 16, 16)).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="part"):
        videojepa.load(ck, part="probe")
    bad = tmp_path / "junk.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a videojepa pretraining checkpoint"):
        videojepa.load(bad)
