import numpy as np
import pytest

from videojepa.data import decode as D
from videojepa.data.decode import DecodeError, probe, read_all_frames, read_frame_folder, read_frames, read_image


@pytest.mark.parametrize("name", ["h264", "vp9", "mpeg4", "vfr"])
def test_every_returned_frame_equals_a_full_sequential_decode(media, name, monkeypatch):
    path = getattr(media, name)
    info = probe(path)
    ref = read_all_frames(path)
    assert len(ref) == info.num_frames
    fallbacks = []
    orig = D._read_sequential
    monkeypatch.setattr(D, "_read_sequential", lambda *a, **k: fallbacks.append(1) or orig(*a, **k))
    n = info.num_frames
    for start in range(n):  # clips starting at every frame, a few strides, and out-of-order picks
        for step in (1, 3):
            idx = np.arange(start, min(n, start + 8 * step), step)
            assert np.array_equal(read_frames(path, idx, info=info), ref[idx]), (name, start, step)
    idx = np.array([n - 1, 0, n // 2, n // 2, 3])
    assert np.array_equal(read_frames(path, idx, info=info), ref[idx])
    assert not fallbacks  # the seek path was exact on its own, never needing the sequential fallback


def test_h264_test_file_has_b_frames(media):
    import av

    with av.open(str(media.h264)) as c:
        types = {str(f.pict_type).split(".")[-1] for f in c.decode(video=0)}
    assert "B" in types or "3" in types, types


def test_seek_converts_only_the_wanted_frames(media, monkeypatch):
    info = probe(media.h264)
    assert len(info.keyframes) >= 3
    converted, seq = [], []
    orig_rgb, orig_seq = D._to_rgb, D._read_sequential
    monkeypatch.setattr(D, "_to_rgb", lambda f: converted.append(f.pts) or orig_rgb(f))
    monkeypatch.setattr(D, "_read_sequential", lambda *a, **k: seq.append(1) or orig_seq(*a, **k))
    k = int(info.keyframes[-2])
    out = read_frames(media.h264, [k + 1, k + 3, k + 1], info=info)
    assert out.shape == (3, 48, 64, 3) and np.array_equal(out[0], out[2])
    assert len(converted) == 2 and not seq
    # the decoder started at that keyframe and stopped at the last wanted frame
    assert D.LAST_READ["seek_pts"] == int(info.pts[k])
    assert D.LAST_READ["decoded"] + D.LAST_READ["skipped"] == 4


@pytest.mark.parametrize("name", ["h264", "mpeg4"])
def test_unwanted_non_reference_frames_are_not_decoded(media, name):
    path = getattr(media, name)
    info, ref = probe(path), read_all_frames(path)
    skipped = 0
    for start in range(0, info.num_frames - 13):
        idx = np.arange(start, start + 13, 4)
        assert np.array_equal(read_frames(path, idx, info=info), ref[idx])
        skipped += D.LAST_READ["skipped"]
    assert skipped > 0  # B-frames between the wanted frames were left out, and the frames are still exact


def test_probe_reports_rate_duration_size_codec(media):
    i = probe(media.h264)
    assert (i.num_frames, i.width, i.height, i.codec) == (50, 64, 48, "h264")
    assert i.fps == pytest.approx(25.0) and i.duration == pytest.approx(2.0)
    low = probe(media.lowfps)
    assert low.fps == pytest.approx(2.0) and low.num_frames == 8 and low.duration == pytest.approx(4.0)
    v = probe(media.vfr)  # frame durations cycle 20, 60, 40 ms
    assert np.allclose(np.diff(v.times)[:6], [0.02, 0.06, 0.04, 0.02, 0.06, 0.04], atol=1e-6)
    assert 1.41 < v.duration < 1.47  # the last frame lasts 20..60 ms
    w = probe(media.wide)
    assert (w.width, w.height) == (96, 32)


@pytest.mark.parametrize("attr, reason", [
    ("missing", "file not found"), ("empty", "empty"), ("truncated", "not a readable media file"),
    ("text", "not a readable media file"), ("audio", r"no video stream \(audio only\)"),
])
def test_broken_files_fail_with_the_file_and_reason(media, attr, reason):
    path = getattr(media, attr)
    with pytest.raises(DecodeError, match=reason) as e:
        read_frames(path, [0])
    assert str(path) in str(e.value) and e.value.path == str(path)


def test_undecodable_frames_are_an_error_not_garbage(media):
    info = probe(media.corrupt)  # the packets are there, their payload is noise
    with pytest.raises(DecodeError, match="could not be decoded"):
        read_frames(media.corrupt, np.arange(info.num_frames), info=info)


def test_out_of_range_indices_name_the_file(media):
    with pytest.raises(DecodeError, match="outside the video's 50 frames"):
        read_frames(media.h264, [0, 50])


def test_bytes_source_gives_the_same_frames(media):
    data = media.vp9.read_bytes()
    assert np.array_equal(read_frames(data, [5, 17]), read_frames(media.vp9, [5, 17]))


def test_images_and_frame_folders(media, tmp_path):
    img = read_image(media.image)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    fr = read_frame_folder(media.frames, [0, 1, 10, 11])
    assert fr.shape == (4, 48, 64, 3)
    assert np.array_equal(fr[2], read_image(media.frames / "img_11.png"))  # natural order: img_11 is the 11th
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DecodeError, match="not a readable image"):
        read_image(bad)


def test_display_rotation_is_applied(media):
    fr = read_frames(media.rotated, [0])  # coded 64 wide x 48 high, displayed rotated by 90 degrees
    assert fr.shape == (1, 64, 48, 3)
