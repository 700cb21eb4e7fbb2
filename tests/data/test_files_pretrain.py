"""End to end: ``videojepa pretrain`` on a CSV of real video files, one of them broken."""
import json
import shutil

import pytest

from videojepa.cli import main


def _index(media, tmp_path, broken):
    d = tmp_path / "videos"
    d.mkdir()
    for p in (media.h264, media.vp9, media.mpeg4, media.vfr):
        shutil.copy(p, d / p.name)
    lines = [f"{p.name} {i % 2}" for i, p in enumerate((media.h264, media.vp9, media.mpeg4, media.vfr))]
    lines += [f"{b} 1" for b in broken]
    (d / "train.csv").write_text("\n".join(lines) + "\n")
    return d / "train.csv"


@pytest.mark.slow
def test_pretrain_on_real_files_skips_and_reports_the_broken_one(media, tmp_path, capsys):
    index = _index(media, tmp_path, [media.truncated])
    out = tmp_path / "run"
    rc = main(["pretrain", "--config", "cpu_test", "--out", str(out), "--no-progress", "--max-steps", "3",
               "data.source=files", f"data.datasets=[{index}]", "data.batch_size=5", "data.max_failure_rate=0.5",
               "data.frame_step=2"])
    text = capsys.readouterr().out
    assert rc == 0, text
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 3
    assert s["data"]["samples_skipped"] >= 1 and s["data"]["samples_ok"] + s["data"]["samples_skipped"] == 15
    assert list(s["data"]["skipped_files"]) == [str(media.truncated)]
    assert "not a readable media file" in s["data"]["skipped_files"][str(media.truncated)]
    assert f"skipped unreadable sample {media.truncated}" in text and text.count(str(media.truncated)) == 1
    assert "samples_skipped" in (out / "metrics.csv").read_text().splitlines()[0]


def test_pretrain_stops_with_a_clear_error_when_nothing_decodes(media, tmp_path, capsys):
    d = tmp_path / "bad.csv"
    d.write_text("".join(f"{p} 0\n" for p in (media.missing, media.empty, media.text, media.audio)))
    rc = main(["pretrain", "--config", "cpu_test", "--out", str(tmp_path / "run"), "--no-progress", "--max-steps", "50",
               "data.source=files", f"data.datasets=[{d}]", "data.batch_size=4"])
    err = capsys.readouterr().err
    assert rc == 1 and "no sample could be read" in err and "file not found" in err
