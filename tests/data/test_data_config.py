from pathlib import Path

import pytest
import yaml

from videojepa.config import ConfigError, DataSection, load_config
from videojepa.data.build import build_files_dataset
from videojepa.data.video_dataset import VideoDataset

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.mark.parametrize("kw, key", [
    (dict(frame_step=2, fps=4.0), "at most one of frame_step, fps and clip_duration"),
    (dict(short_video="stretch"), "data.short_video"),
    (dict(num_clips=0), "data.num_clips"),
    (dict(eval_views=0), "data.eval_views"),
    (dict(eval_on_error="ignore"), "data.eval_on_error"),
    (dict(fps=0.0), "data.fps"),
    (dict(random_resize_scale=(0.5, 0.2)), "data.random_resize_scale"),
    (dict(random_resize_aspect_ratio=(0.0, 1.0)), "data.random_resize_aspect_ratio"),
    (dict(datasets=["a.csv"], datasets_weights=[1.0, 2.0]), "data.datasets_weights"),
    (dict(source="files"), "data.source=files needs data.datasets"),
])
def test_data_fields_are_validated_with_their_names(kw, key):
    with pytest.raises(ConfigError, match=key):
        DataSection(**kw)


def test_clip_sampling_from_the_config():
    assert DataSection().clip_sampling().frame_step == 4  # V-JEPA 1's default when nothing is set
    assert DataSection(fps=4.0).clip_sampling().fps == 4.0
    s = DataSection(num_frames=16, clip_duration=8.0, num_clips=2, short_video="loop").clip_sampling()
    assert (s.fps, s.frame_step, s.num_clips, s.short_video) == (2.0, None, 2, "loop")


def test_official_keys_map_to_the_data_fields(tmp_path):
    d = yaml.safe_load((ASSETS / "official_vjepa1_vitl16.yaml").read_text())
    d["data"].update(num_clips=2, filter_short_videos=True)
    f = tmp_path / "j1.yaml"
    f.write_text(yaml.safe_dump(d))
    cfg, notes = load_config(f)
    assert (cfg.data.num_clips, cfg.data.short_video, cfg.data.frame_step) == (2, "skip", 4)
    assert not any("filter_short_videos" in n or "num_clips" in n for n in notes)
    d["data"].update(clip_duration=4.0)
    f.write_text(yaml.safe_dump(d))
    cfg, _ = load_config(f)
    assert (cfg.data.clip_duration, cfg.data.frame_step) == (4.0, None)
    cfg, _ = load_config(ASSETS / "official_vjepa2_vitl16_256px_16f.yaml")
    assert cfg.data.clip_sampling().fps == 4 and cfg.data.short_video == "pad"


def test_build_from_the_config(media, tmp_path):
    index = tmp_path / "i.csv"
    index.write_text(f"{media.h264} 0\n{media.vp9} 1\n")
    cfg, _ = load_config("cpu_test", ["data.source=files", f"data.datasets=[{index},{index}]",
                                      "data.datasets_weights=[1,3]", "data.num_clips=2"])
    from videojepa.training.trainer import build_dataset

    ds = build_dataset(cfg)
    assert isinstance(ds, VideoDataset) and len(ds) == 8 and ds.mixture == ([4, 4], [1.0, 3.0])
    assert ds.getitem(0, 0)["clip"].shape == (3, 4, 16, 16)
    ev = build_files_dataset(cfg.data, mode="eval")
    assert len(ev) == 4 and ev.on_error == "raise" and ev[1]["clip"].shape == (2, 3, 4, 16, 16)
