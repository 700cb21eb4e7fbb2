import json

from videojepa.cli import main


def test_data_check_lists_readable_and_unreadable_files(media, tmp_path, capsys):
    index = tmp_path / "index.csv"
    files = [media.h264, media.vp9, media.mpeg4, media.lowfps, media.short, media.image, media.frames,
             media.missing, media.audio, media.text]
    index.write_text("".join(f"{p} 0\n" for p in files))
    rc = main(["data", "check", str(index), "--no-progress", "--json", str(tmp_path / "out.jsonl"),
               "data.num_frames=8", "data.frame_step=2"])
    out = capsys.readouterr().out
    assert rc == 1  # some files are unreadable
    assert "checked 10 files" in out and "7 readable, 3 unreadable" in out
    assert f"{media.missing}: file not found" in out and f"{media.audio}: no video stream (audio only)" in out
    for word in ("h264", "vp9", "mpeg4", "64x48", "duration s:", "fps:", "resolutions:", "codecs:",
                 "8 frames at frame_step=2", "shorter than one clip"):
        assert word in out, word
    recs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    by = {r["path"]: r for r in recs}
    h = by[str(media.h264)]
    assert (h["frames"], h["fps"], h["width"], h["height"], h["codec"], h["fits"]) == (50, 25.0, 64, 48, "h264", 3)
    assert by[str(media.short)]["short"] and by[str(media.frames)]["kind"] == "frames"
    assert by[str(media.lowfps)]["fps"] == 2.0


def test_data_check_on_a_folder_all_readable(media, tmp_path, capsys):
    import shutil

    for p in (media.h264, media.wide):
        shutil.copy(p, tmp_path / p.name)
    assert main(["data", "check", str(tmp_path), "--no-progress", "data.fps=4"]) == 0
    out = capsys.readouterr().out
    assert "2 readable, 0 unreadable" in out and "96x32" in out and "fps=4" in out
    assert main(["data", "check", str(tmp_path / "nope.csv"), "--no-progress"]) == 2
