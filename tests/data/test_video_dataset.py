import io
import tarfile

import numpy as np
import pytest
import torch

from videojepa.data.decode import read_all_frames
from videojepa.data.errors import DataError, SkippedSample
from videojepa.data.loader import build_loader
from videojepa.data.sampling import ClipSampling
from videojepa.data.sources import Entry, kind_of
from videojepa.data.video_dataset import ClipReader, VideoDataset, eval_collate
from videojepa.data.webdataset import WebDatasetStream
from videojepa.masks.collator import MaskCollator, MaskGenerator
from videojepa.masks.multiblock import DEFAULT_MASKS


def entries(*paths, label=0):
    return [Entry(str(p), label, kind_of(str(p))) for p in paths]


def reader(F=4, step=2, crop=(16, 16), **kw):
    return ClipReader(ClipSampling(F, frame_step=step, num_clips=kw.pop("num_clips", 1),
                                   short_video=kw.pop("short_video", "pad")), crop_size=crop, **kw)


def test_train_items_are_exact_frames_and_a_pure_function_of_seed_step_index(media):
    exact = reader(crop=(48, 64), random_resize_scale=(1.0, 1.0), random_resize_aspect_ratio=(4 / 3, 4 / 3), flip=False)
    ds = VideoDataset(entries(media.h264, media.vp9), exact, seed=1)
    it = ds.getitem(1, step=7)
    ref = read_all_frames(media.vp9)[it["frame_indices"].numpy()]
    assert torch.equal(it["clip"], torch.from_numpy(ref).permute(3, 0, 1, 2).float() / 255)
    ds = VideoDataset(entries(media.h264, media.vp9), reader(), seed=1)
    a, b, c = ds.getitem(0, 3), ds.getitem(0, 3), ds.getitem(0, 4)
    assert a["clip"].shape == (3, 4, 16, 16) and a["label"] == 0 and a["index"] == 0
    assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["frame_indices"], b["frame_indices"])
    assert not torch.equal(a["clip"], c["clip"])  # another step: another position / crop
    assert not torch.equal(a["clip"], VideoDataset(entries(media.h264, media.vp9), reader(), seed=2).getitem(0, 3)["clip"])


def test_num_clips_gives_each_part_of_a_video_its_own_training_item(media):
    ds = VideoDataset(entries(media.h264), reader(num_clips=2), seed=0)  # 50 frames, span 7
    assert len(ds) == 2
    for s in range(10):
        assert ds.getitem(0, s)["frame_indices"].max() < 25 <= ds.getitem(1, s)["frame_indices"].min()


def test_unreadable_training_samples_are_skipped_with_a_reason(media):
    broken = [media.missing, media.empty, media.truncated, media.text, media.audio, media.short]
    ds = VideoDataset(entries(*broken), reader(F=4, step=2, short_video="skip"), seed=0)
    out = [ds.getitem(i, 0) for i in range(len(ds))]
    assert all(isinstance(o, SkippedSample) for o in out)
    reasons = {o.path.rsplit("/", 1)[-1]: o.reason for o in out}
    assert reasons["missing.mp4"] == "file not found" and "empty" in reasons["empty.mp4"]
    assert "not a readable media file" in reasons["truncated.mp4"] and "not a readable" in reasons["notes.mp4"]
    assert "audio only" in reasons["audio.m4a"] and "too short" in reasons["short.mp4"]
    # the same short video is padded / looped under the other policies
    for policy in ("pad", "loop"):
        it = VideoDataset(entries(media.short), reader(F=4, step=2, short_video=policy)).getitem(0, 0)
        assert it["clip"].shape == (3, 4, 16, 16)


def test_images_frame_folders_low_fps_and_vfr_videos(media):
    r = ClipReader(ClipSampling(4, fps=4.0), crop_size=(16, 16))
    ents = entries(media.image, media.frames, media.lowfps, media.vfr)
    ds = VideoDataset(ents, r, seed=0)
    for i in range(len(ds)):
        it = ds.getitem(i, 0)
        assert it["clip"].shape == (3, 4, 16, 16), ents[i]
    img = ds.getitem(0, 0)["clip"]
    assert all(torch.equal(img[:, 0], img[:, t]) for t in range(4))  # an image is a still clip
    low = VideoDataset(entries(media.lowfps), r, mode="eval").getitem(0)  # 2 fps < 4 fps: frames repeat
    fi = low["frame_indices"][0].tolist()
    assert fi == sorted(fi) and len(set(fi)) == 2


def test_eval_mode_views_errors_and_reports(media):
    r = reader(F=4, step=2, crop=(16, 16), num_clips=2, eval_views=3)
    ds = VideoDataset(entries(media.wide, media.h264), r, mode="eval")
    it = ds[0]
    assert it["clip"].shape == (6, 3, 4, 16, 16) and it["frame_indices"].shape == (2, 4)
    assert torch.equal(ds[0]["clip"], it["clip"])  # deterministic
    left, right = it["clip"][0], it["clip"][2]  # red on the left of the wide video, green on the right
    assert left[0].mean() > left[1].mean() and right[1].mean() > right[0].mean()
    assert it["frame_indices"][0, 0] == 0 and it["frame_indices"][1, -1] == 11  # first and last segment
    bad = VideoDataset(entries(media.h264, media.missing), r, mode="eval")
    with pytest.raises(DataError, match=r"missing.mp4: file not found"):
        bad[1]
    rep = VideoDataset(entries(media.h264, media.missing), r, mode="eval", on_error="report")
    batch = eval_collate([rep[0], rep[1]])
    assert batch["clips"].shape == (1, 6, 3, 4, 16, 16) and batch["indices"].tolist() == [0]
    assert [s.path for s in batch["skipped"]] == [str(media.missing)]


def test_loader_is_deterministic_for_any_worker_count_and_resume(media):
    ds = VideoDataset(entries(media.h264, media.vp9, media.mpeg4, media.vfr, media.missing), reader(), seed=0)
    coll = MaskCollator(MaskGenerator(DEFAULT_MASKS, (2, 2, 2), seed=0))
    kw = dict(batch_size=2, seed=0, max_steps=4)
    a = list(build_loader(ds, coll, start_step=0, num_workers=0, **kw))
    b = list(build_loader(ds, coll, start_step=2, num_workers=2, **kw))
    assert [x["step"] for x in b] == [2, 3]
    for x, y in zip(a[2:], b):
        assert [s.path for s in x["skipped"]] == [s.path for s in y["skipped"]]
        if x["clips"] is not None:
            assert torch.equal(x["clips"], y["clips"]) and torch.equal(x["indices"], y["indices"])
    assert any(x["skipped"] for x in a) or all(x["clips"].shape[0] == 2 for x in a)


def test_weighted_mixture_of_sources(media):
    ents = entries(media.h264, media.vp9) + entries(media.mpeg4, label=1)
    ds = VideoDataset(ents, reader(), sources=[("a", 2), ("b", 1)], weights=[0.1, 0.9])
    from videojepa.data.loader import StepBatchSampler

    picks = [i for b in StepBatchSampler(len(ds), 8, 0, 0, 50, mixture=ds.mixture) for _, i in b]
    share_b = np.mean([i == 2 for i in picks])
    assert 0.8 < share_b < 0.97
    with pytest.raises(ValueError, match="weights for"):
        VideoDataset(ents, reader(), sources=[("a", 2), ("b", 1)], weights=[1.0])


def _shards(media, tmp_path, n_shards=2, per=3):
    paths, k = [], 0
    for s in range(n_shards):
        p = tmp_path / f"shard-{s:03d}.tar"
        with tarfile.open(p, "w") as tf:
            for j in range(per):
                src = [media.h264, media.vp9, media.mpeg4, media.empty][k % 4]
                for name, data in ((f"s{k:04d}{src.suffix}", src.read_bytes()), (f"s{k:04d}.cls", str(k % 2).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                k += 1
        paths.append(str(p))
    return paths


def test_webdataset_stream_batches_in_step_order_and_resumes(media, tmp_path):
    shards = _shards(media, tmp_path)
    coll = MaskCollator(MaskGenerator(DEFAULT_MASKS, (2, 2, 2), seed=0))
    mk = lambda: WebDatasetStream(shards, reader(), seed=0)  # noqa: E731
    kw = dict(batch_size=2, seed=0, max_steps=5, num_workers=0)
    a = list(build_loader(mk(), coll, start_step=0, **kw))
    assert [x["step"] for x in a] == [0, 1, 2, 3, 4]  # 6 samples per epoch: step 3 starts the next epoch
    skipped = [s for x in a for s in x["skipped"]]
    assert skipped and all(s.path.endswith(".mp4") and "empty" in s.reason for s in skipped)
    assert {int(l) for x in a if x["clips"] is not None for l in x["labels"]} <= {0, 1}
    b = list(build_loader(mk(), coll, start_step=3, **kw))
    assert [x["step"] for x in b] == [3, 4]
    for x, y in zip(a[3:], b):
        assert (x["clips"] is None) == (y["clips"] is None)
        if x["clips"] is not None:
            assert torch.equal(x["clips"], y["clips"])
    w = list(build_loader(mk(), coll, start_step=1, **{**kw, "num_workers": 2, "max_steps": 4}))
    assert [x["step"] for x in w] == [1, 2, 3]


def test_step_dataset_passes_the_step_to_the_base_dataset(media):
    from videojepa.data.loader import StepDataset
    from videojepa.data.transforms import normalize

    ds = VideoDataset(entries(media.h264), reader(), seed=0)
    item = StepDataset(ds)[(5, 0)]
    assert item["step"] == 5 and torch.equal(item["clip"], normalize(ds.getitem(0, 5)["clip"]))
    skipped = StepDataset(VideoDataset(entries(media.missing), reader()))[(7, 0)]
    assert isinstance(skipped, SkippedSample) and skipped.step == 7
