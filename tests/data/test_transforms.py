import math

import numpy as np
import pytest
import torch

from videojepa.data.transforms import (IMAGENET_MEAN, eval_transform, hflip, normalize, random_resized_crop_box,
                                       resized_crop, spatial_crop_boxes, to_clip, train_transform)


def halves_frames(T=3, H=32, W=96):
    """Left half red, right half green, top two rows white."""
    f = np.zeros((T, H, W, 3), np.uint8)
    f[:, :, : W // 2, 0] = 200
    f[:, :, W // 2:, 1] = 200
    f[:, :2] = 255
    return f


def test_random_resized_crop_box_follows_the_scale_and_ratio_ranges():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(500):
        t, l, h, w = random_resized_crop_box(360, 640, (0.3, 1.0), (0.75, 1.35), rng)
        assert 0 <= t and t + h <= 360 and 0 <= l and l + w <= 640
        areas.append(h * w / (360 * 640))
        ratios.append(w / h)
    assert 0.28 <= min(areas) and max(areas) <= 1.0
    assert 0.73 <= min(ratios) and max(ratios) <= 1.37
    # log-uniform: where every box fits, the mean log ratio sits in the middle of the log range
    logs = [np.log(w / h) for _, _, h, w in (random_resized_crop_box(400, 400, (0.3, 0.5), (0.75, 1.35), rng)
                                             for _ in range(500))]
    assert abs(np.mean(logs) - (math.log(0.75) + math.log(1.35)) / 2) < 0.03
    # no box with that ratio fits 10 times in a row: the centre-crop fallback clamps the ratio
    assert random_resized_crop_box(10, 100, (1.0, 1.0), (0.75, 1.35), np.random.default_rng(0)) == (0, 43, 10, 14)


def test_non_square_frames_keep_height_and_width():
    f = halves_frames()
    clip = to_clip(f)
    assert clip.shape == (3, 3, 32, 96)  # [C, T, H, W]
    out = resized_crop(f, (0, 0, 32, 96), (16, 48))
    assert out.shape == (3, 3, 16, 48)
    assert out[0, 0, 8, 5] > 0.7 and out[1, 0, 8, 5] < 0.1  # left stays red
    assert out[1, 0, 8, 40] > 0.7 and out[0, 0, 8, 40] < 0.1  # right stays green
    assert out[:, 0, 0].min() > 0.9  # the top row stays on top
    fl = hflip(out)
    assert fl[1, 0, 8, 5] > 0.7 and fl[0, 0, 8, 40] > 0.7
    views = eval_transform(f, (16, 16), num_views=3)  # short side 32 -> 16, width 96 -> 48: left, centre, right
    assert [tuple(v.shape) for v in views] == [(3, 3, 16, 16)] * 3
    assert views[0][0, 0, 8, 8] > 0.7 and views[2][1, 0, 8, 8] > 0.7
    assert spatial_crop_boxes(16, 48, (16, 16), 3) == [(0, 0, 16, 16), (0, 16, 16, 16), (0, 32, 16, 16)]
    tall = spatial_crop_boxes(48, 16, 16, 3)
    assert [b[0] for b in tall] == [0, 16, 32] and all(b[1] == 0 for b in tall)


def test_single_view_eval_resizes_with_the_reference_margin_then_centre_crops():
    f = np.zeros((2, 360, 640, 3), np.uint8)
    f[:, 150:210, 290:350] = 255  # a white square in the centre
    (v,) = eval_transform(f, 224, num_views=1)
    assert v.shape == (3, 2, 224, 224)
    assert v[:, :, 112, 112].min() > 0.99 and v[:, :, 5, 5].max() < 0.01
    (v2,) = eval_transform(f, (224, 224), num_views=1, short_side=224)  # no margin when the short side is given
    assert v2.shape == (3, 2, 224, 224)


def test_train_transform_is_a_function_of_the_generator():
    f = halves_frames(4, 48, 64)
    a = train_transform(f, (16, 16), np.random.default_rng(3))
    b = train_transform(f, (16, 16), np.random.default_rng(3))
    c = train_transform(f, (16, 24), np.random.default_rng(4))
    assert torch.equal(a, b) and a.shape == (3, 4, 16, 16) and c.shape == (3, 4, 16, 24)
    assert 0.0 <= a.min() and a.max() <= 1.0
    flips = {bool(train_transform(f, (8, 8), np.random.default_rng(s), scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3))[1, 0, 4, 0] > 0.5)
             for s in range(20)}
    assert flips == {True, False}  # green on the left only when flipped


def test_normalize_uses_imagenet_statistics():
    x = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1).expand(3, 2, 2, 2)
    assert normalize(x).abs().max() < 1e-6
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        to_clip(np.zeros((2, 3, 4), np.uint8))
