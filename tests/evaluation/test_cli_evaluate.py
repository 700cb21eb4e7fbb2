"""videojepa embed / probe / classify end to end on a 2-step cpu_test run and the synthetic dataset."""
import json

import pytest
import torch

from videojepa.cli import main
from videojepa.evaluation.store import load_features


def test_help_has_examples(capsys):
    for cmd in ("embed", "probe", "classify"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"videojepa {cmd}" in out


def test_embed_is_resumable(run_checkpoint, tmp_path, capsys):
    args = ["embed", "synthetic:val:10", "--checkpoint", run_checkpoint, "--shard-size", "4", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    part = tmp_path / "part"
    assert main(args + ["--out", str(part), "--max-shards", "1"]) == 0  # "interrupted" after one shard
    assert "run the same command again" in capsys.readouterr().out
    with pytest.raises(ValueError, match="incomplete"):
        load_features(part)
    idx = json.loads((part / "index.json").read_text())
    assert list(idx["shards"]) == ["0"] and not idx["complete"]
    assert main(args + ["--out", str(part)]) == 0
    assert "resuming: 4 of 10" in capsys.readouterr().err
    a, b = load_features(tmp_path / "full"), load_features(part)
    assert a.features.shape == (10, 32) and torch.allclose(a.features, b.features, atol=1e-6)
    assert torch.equal(a.labels, b.labels) and a.indices.tolist() == list(range(10))
    assert main(args + ["--out", str(part)]) == 0 and "nothing to do" in capsys.readouterr().out
    assert main(args + ["--out", str(part), "--pool", "none"]) == 2  # other settings in the same folder
    assert "pool" in capsys.readouterr().err


def test_embed_windows_npy(run_checkpoint, tmp_path):
    out = tmp_path / "w"
    assert main(["embed", "synthetic:val:3", "--checkpoint", run_checkpoint, "--out", str(out), "--window", "4",
                 "--stride", "2", "--video-frames", "8", "--format", "npy", "--no-progress"]) == 0
    assert (out / "shard_00000.window_features.npy").is_file()
    w = load_features(out, windows=True)
    assert w.features.shape == (9, 32) and w.meta["window_start"].tolist() == [0, 2, 4] * 3
    assert load_features(out).features.shape == (3, 32)


def test_probe_then_classify(run_checkpoint, tmp_path, capsys):
    out = tmp_path / "probe_run"
    assert main(["probe", "--train", "synthetic:train:40", "--val", "synthetic:val:20", "--checkpoint", run_checkpoint,
                 "--out", str(out), "--epochs", "2", "--lrs", "1e-3", "3e-3", "--wds", "0.01", "--label-fraction",
                 "0.5", "1", "--seeds", "2", "--no-progress"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert [f["label_fraction"] for f in r["fractions"]] == [0.5, 1.0]
    f = r["fractions"][0]
    assert set(f["top1"]) == {"mean", "std", "n"} and f["top1"]["n"] == 2 and len(f["runs"]) == 2
    assert len(f["runs"][0]["grid"]) == 2 and f["best_hparams"]["lr"] in (1e-3, 3e-3)
    assert f["n_train"][0] < r["fractions"][1]["n_train"][0] == 40
    assert r["best"]["label_fraction"] == 1.0 and r["num_classes"] == 14
    assert (out / "confusion.png").is_file() and (out / "probe" / "model.safetensors").is_file()
    cfg = json.loads((out / "probe" / "config.json").read_text())
    assert cfg["evaluation"]["checkpoint"] == run_checkpoint and cfg["labels"][0] == "move_right"
    capsys.readouterr()
    assert main(["classify", "synthetic:val:20", "--item", "3", "--probe", str(out / "probe"), "--top", "3",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    from videojepa.data.synthetic import DEFAULT_CLASSES

    assert "item 3" in text and "label:" in text
    assert sum(line.strip().startswith(("1.", "2.", "3.")) for line in text.splitlines()) == 3
    assert any(c in text for c in DEFAULT_CLASSES)


def test_probe_linear_knn_and_multiview(run_checkpoint, tmp_path):
    common = ["--train", "synthetic:train:16", "--val", "synthetic:val:8", "--checkpoint", run_checkpoint,
              "--epochs", "1", "--no-progress"]
    assert main(["probe", *common, "--kind", "linear", "--out", str(tmp_path / "lin")]) == 0
    assert main(["probe", *common, "--kind", "knn", "--out", str(tmp_path / "knn")]) == 0
    assert main(["probe", *common, "--segments", "2", "--views", "3", "--out", str(tmp_path / "mv")]) == 0
    r = json.loads((tmp_path / "mv" / "results.json").read_text())
    assert r["features"]["clip"]["segments"] == 2 and r["features"]["clip"]["views"] == 3


def test_clear_errors(run_checkpoint, tmp_path, capsys):
    assert main(["embed", "synthetic:val:2", "--checkpoint", str(tmp_path / "missing.pt"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["probe", "--train", str(tmp_path / "nope.csv"), "--val", "synthetic:val:4", "--checkpoint",
                 run_checkpoint, "--out", str(tmp_path / "p"), "--no-progress"]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert main(["embed", "synthetic:bogus", "--checkpoint", run_checkpoint, "--out", str(tmp_path / "o")]) == 2
    assert "split" in capsys.readouterr().err
    assert main(["classify", "synthetic:val", "--probe", str(tmp_path / "none")]) == 2
    assert "none" in capsys.readouterr().err


def test_video_files_end_to_end(run_checkpoint, tmp_path, capsys):
    """A CSV index of real (tiny) videos: embed with segments x views, sliding windows, classify a file."""
    from ..data.conftest import write_video

    vids = [write_video(tmp_path / f"v{i}.mp4", "mpeg4", 30 + 10 * i) for i in range(2)]
    index = tmp_path / "index.csv"
    index.write_text("".join(f"{v} {i}\n" for i, v in enumerate(vids)))
    common = ["--checkpoint", run_checkpoint, "--no-progress", "--frame-step", "2"]
    assert main(["embed", str(index), "--out", str(tmp_path / "mv"), "--segments", "2", "--views", "3",
                 "--pool", "none", *common]) == 0
    fs = load_features(tmp_path / "mv")
    assert fs.features.shape == (2, 6, 32, 32) and (fs.segments, fs.views) == (2, 3)
    assert fs.labels.tolist() == [0, 1]
    assert main(["embed", str(index), "--out", str(tmp_path / "win"), "--window", "4", "--stride", "4", *common]) == 0
    w = load_features(tmp_path / "win", windows=True)
    # 30 frames at step 2 -> 15 sampled frames -> windows at 0, 4, 8, 11 (frame indices x 2 in the file)
    assert w.meta["window_start"][:4].tolist() == [0, 8, 16, 22]
    out = tmp_path / "p"
    assert main(["probe", "--train", str(index), "--val", str(index), "--out", str(out), "--epochs", "1",
                 "--lrs", "1e-3", "--wds", "0.1", *common]) == 0
    capsys.readouterr()
    assert main(["classify", str(vids[0]), "--probe", str(out / "probe"), "--top", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert str(vids[0]) in text and "1. class_" in text


@pytest.mark.slow
def test_embed_under_torchrun_matches_one_process(run_checkpoint, tmp_path, launch):
    """Two ranks share the shards; rank 0 alone records them; the features equal a one-process run."""
    import os
    import sys

    args = ["embed", "synthetic:val:10", "--checkpoint", run_checkpoint, "--shard-size", "2", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "videojepa",
           *args, "--out", str(tmp_path / "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = launch(cmd + ["--max-shards", "3"], 300, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("stopped after 3 shard(s)") == 1 and "2 left" in r.stdout  # 3 in all, not 3 per rank
    r = launch(cmd, 300, env)  # continues
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("done: 10 items") == 1  # only rank 0 reports
    a, b = load_features(tmp_path / "one"), load_features(tmp_path / "two")
    assert torch.allclose(a.features, b.features, atol=1e-6) and torch.equal(a.labels, b.labels)
    assert sorted(json.loads((tmp_path / "two" / "index.json").read_text())["shards"], key=int) == [str(i) for i in range(5)]
