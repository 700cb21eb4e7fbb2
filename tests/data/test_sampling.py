import numpy as np
import pytest

from videojepa.data.sampling import ClipSampling, ShortVideoError, clip_starts, clips_that_fit, sample_clips


def g(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("n, F, step, clips, expected", [
    (20, 4, 2, 1, [[7, 9, 11, 13]]),                       # centre: span 7, starts 0..13, 6.5 rounds half up
    (20, 4, 2, 2, [[0, 2, 4, 6], [13, 15, 17, 19]]),       # first and last
    (7, 4, 2, 1, [[0, 2, 4, 6]]),                          # exactly one clip
    (30, 3, 1, 3, [[0, 1, 2], [14, 15, 16], [27, 28, 29]]),
])
def test_eval_positions_by_frame_step(n, F, step, clips, expected):
    out = sample_clips(ClipSampling(F, frame_step=step, num_clips=clips), n, mode="eval")
    assert [o.tolist() for o in out] == expected


@pytest.mark.parametrize("policy, expected", [
    ("pad", [0, 3, 4, 4]),   # the last frame repeats (the reference pads with the last index)
    ("loop", [0, 3, 1, 4]),  # positions 0, 3, 6, 9 of the video played in a loop (5 frames)
])
def test_short_video_policies_by_frame_step(policy, expected):
    spec = ClipSampling(4, frame_step=3, short_video=policy, num_clips=2)
    for mode, rng in (("eval", None), ("train", g())):
        out = sample_clips(spec, 5, mode=mode, rng=rng)
        assert [o.tolist() for o in out] == [expected, expected]
    with pytest.raises(ShortVideoError, match=r"5 frames, a clip of 4 frames at frame_step=3 needs 10"):
        sample_clips(ClipSampling(4, frame_step=3, short_video="skip"), 5, mode="eval")


def test_training_positions_are_random_inside_their_part_and_reproducible():
    spec = ClipSampling(4, frame_step=2, num_clips=3)  # span 7 frames, parts of 30 frames
    seen = set()
    for s in range(200):
        out = sample_clips(spec, 90, mode="train", rng=g(s))
        for j, o in enumerate(out):
            assert 30 * j <= o[0] and o[-1] < 30 * (j + 1)
            assert np.all(np.diff(o) == 2)
        seen.add(int(out[0][0]))
        assert [x.tolist() for x in out] == [x.tolist() for x in sample_clips(spec, 90, mode="train", rng=g(s))]
    assert seen == set(range(0, 24))  # every start of part 0 is reachable, and only those
    one = sample_clips(spec, 90, mode="train", rng=g(5), clip=2)
    assert len(one) == 1 and 60 <= one[0][0] <= 83
    # parts shorter than a clip: anywhere in the video
    out = sample_clips(ClipSampling(4, frame_step=2, num_clips=4), 10, mode="train", rng=g(1))
    assert all(0 <= o[0] and o[-1] <= 9 for o in out)


def test_fps_sampling_reads_timestamps_and_handles_slow_and_variable_rates():
    t30 = np.arange(90) / 30.0  # 3 s at 30 fps
    out = sample_clips(ClipSampling(4, fps=4.0), t30, mode="eval")  # span 0.75 s, centre start 1.125 s
    assert out[0].tolist() == [33, 41, 48, 56]  # frames on screen at 1.125, 1.375, 1.625, 1.875 s
    t2 = np.arange(6) / 2.0  # 2 fps, below the 4 fps target: frames repeat, nothing divides by zero
    assert sample_clips(ClipSampling(4, fps=4.0), t2, mode="eval")[0].tolist() == [2, 2, 3, 3]
    vfr = np.array([0.0, 0.02, 0.08, 0.12, 0.14, 0.2, 0.24, 0.26, 0.32])
    # centre start (0.36 - 0.12) / 2 = 0.12 s: targets 0.12, 0.16, 0.20, 0.24 s show frames 3, 4, 5, 6
    assert sample_clips(ClipSampling(4, fps=25.0), vfr, 0.36, mode="eval")[0].tolist() == [3, 4, 5, 6]
    # a clip longer than the video
    assert sample_clips(ClipSampling(4, fps=1.0), t2, mode="eval")[0].tolist() == [0, 2, 4, 5]  # 3 s fits (span 3)
    assert sample_clips(ClipSampling(5, fps=1.0, short_video="pad"), t2, mode="eval")[0].tolist() == [0, 2, 4, 5, 5]
    assert sample_clips(ClipSampling(5, fps=1.0, short_video="loop"), t2, mode="eval")[0].tolist() == [0, 2, 4, 0, 2]
    with pytest.raises(ShortVideoError, match="3 s long"):
        sample_clips(ClipSampling(5, fps=1.0, short_video="skip"), t2, mode="eval")


def test_clip_starts_and_clips_that_fit():
    assert clip_starts(10.0, 2.0, 1, "eval") == [4.0]
    assert clip_starts(10.0, 2.0, 3, "eval") == [0.0, 4.0, 8.0]
    assert clip_starts(10, 10, 2, "eval", integer=True) == [0.0, 0.0]
    with pytest.raises(ValueError, match="random generator"):
        clip_starts(10.0, 2.0, 1, "train")
    assert clips_that_fit(ClipSampling(16, frame_step=4), 300, 10.0) == 4  # span 61, stride 64
    assert clips_that_fit(ClipSampling(16, frame_step=4), 60, 2.0) == 0
    assert clips_that_fit(ClipSampling(16, fps=4.0), 300, 10.0) == 2  # span 3.75 s, stride 4 s
    for bad in (dict(frame_step=2, fps=4.0), dict(), dict(frame_step=0), dict(fps=0.0), dict(frame_step=2, short_video="x")):
        with pytest.raises(ValueError):
            ClipSampling(4, **bad)
