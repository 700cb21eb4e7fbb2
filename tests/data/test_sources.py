import shutil

import numpy as np
import pytest

from videojepa.data.errors import DataError
from videojepa.data.sources import Entry, expand_shards, load_source, parse_spec, read_index


def test_official_index_format_and_variants(tmp_path):
    (tmp_path / "sub").mkdir()
    cases = {
        "official.csv": "/abs/a.mp4 3\nsub/b.webm 0\n",
        "comma.csv": "path,label\n/abs/a.mp4,3\nsub/b.webm,0\n",
        "colons.txt": "/abs/a.mp4::3\nsub/b.webm::0\n",
        "tabs.tsv": "/abs/a.mp4\t3\nsub/b.webm\t0\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        ents = read_index(tmp_path / name)
        assert ents == [Entry("/abs/a.mp4", 3, "video"), Entry(str(tmp_path / "sub" / "b.webm"), 0, "video")], name
    (tmp_path / "spaces.csv").write_text("/my videos/a clip.mp4 2\n\n# comment\n/x/img.jpg 1\n/x/frames_dir 0\n")
    assert read_index(tmp_path / "spaces.csv") == [Entry("/my videos/a clip.mp4", 2, "video"),
                                                   Entry("/x/img.jpg", 1, "image"), Entry("/x/frames_dir", 0, "auto")]
    (tmp_path / "odd.csv").write_text("/v/a,b.mp4 3\n/v/my clip.mp4,1\n")  # a comma or a blank inside a path
    assert [(e.path, e.label) for e in read_index(tmp_path / "odd.csv")] == [("/v/a,b.mp4", 3), ("/v/my clip.mp4", 1)]
    (tmp_path / "nolabel.txt").write_text("a.mp4\nb.mp4\n")
    assert [e.label for e in read_index(tmp_path / "nolabel.txt")] == [None, None]
    np.save(tmp_path / "paths.npy", np.array(["/v/a.mp4", "/v/b.mp4"]))
    assert [e.path for e in read_index(tmp_path / "paths.npy")] == ["/v/a.mp4", "/v/b.mp4"]


def test_index_errors_name_the_line(tmp_path):
    (tmp_path / "bad.csv").write_text("a.mp4 1\nb.mp4 dog\n")
    with pytest.raises(DataError, match=r"bad.csv:2: label 'dog' is not an integer"):
        read_index(tmp_path / "bad.csv")
    (tmp_path / "mixed.csv").write_text("a.mp4 1\nb.mp4\n")
    with pytest.raises(DataError, match="some rows have a label and some do not"):
        read_index(tmp_path / "mixed.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DataError, match="lists no files"):
        read_index(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="index file not found"):
        read_index(tmp_path / "nope.csv")


def test_folders_of_videos_frames_and_images(media, tmp_path):
    vids = tmp_path / "vids"
    for cls, src in (("cat", media.h264), ("dog", media.vp9), ("dog", media.mpeg4)):
        (vids / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, vids / cls / src.name)
    s = load_source(vids)
    assert s.layout == "videos" and s.class_names == ["cat", "dog"]
    assert [(e.path.split("/")[-1], e.label) for e in s.entries] == [("h264.mp4", 0), ("mpeg4.avi", 1), ("vp9.webm", 1)]

    imgs = tmp_path / "imgs" / "k"
    imgs.mkdir(parents=True)
    for i in range(3):
        shutil.copy(media.image, imgs / f"{i}.png")
    with pytest.raises(DataError, match="holds images only.*'frames:.*'images:"):
        load_source(tmp_path / "imgs")
    s = load_source(f"images:{tmp_path / 'imgs'}")
    assert len(s) == 3 and {e.kind for e in s.entries} == {"image"} and s.class_names == ["k"]
    s = load_source(f"frames:{media.frames.parent}")
    assert s.entries == [Entry(str(media.frames), None, "frames")]
    with pytest.raises(DataError, match="no videos, images or .tar shards"):
        (tmp_path / "void").mkdir()
        load_source(tmp_path / "void")


def test_specs_and_shards(tmp_path):
    assert parse_spec("frames:/a") == ("frames", "/a") and parse_spec("/a:b") == (None, "/a:b")
    assert expand_shards("/s/x-{008..010}.tar") == ["/s/x-008.tar", "/s/x-009.tar", "/s/x-010.tar"]
    for i in (2, 10, 1):
        (tmp_path / f"s{i}.tar").write_bytes(b"")
    assert expand_shards(str(tmp_path)) == [str(tmp_path / f"s{i}.tar") for i in (1, 2, 10)]
    assert load_source(tmp_path).layout == "webdataset"
    with pytest.raises(DataError, match="shard"):
        load_source(str(tmp_path / "q-{0..1}.tar"))
