import pytest
import torch

from videojepa.data.loader import batch_indices, build_loader
from videojepa.data.synthetic import SyntheticVideoConfig, SyntheticVideoDataset
from videojepa.masks.collator import MaskCollator, MaskGenerator
from videojepa.masks.multiblock import DEFAULT_MASKS


def test_batches_are_a_pure_function_of_step():
    kw = dict(num_samples=100, batch_size=8, seed=3)
    seen = [i for s in range(12) for i in batch_indices(s, **kw)]  # one epoch = 12 steps (drop_last)
    assert len(set(seen)) == 96  # no repeats within an epoch
    assert batch_indices(5, **kw) == batch_indices(5, **kw)
    assert batch_indices(12, **kw) != batch_indices(0, **kw)  # next epoch, new permutation
    r0 = batch_indices(4, rank=0, world_size=2, **kw)
    r1 = batch_indices(4, rank=1, world_size=2, **kw)
    assert not set(r0) & set(r1)
    with pytest.raises(ValueError, match="larger than the dataset"):
        batch_indices(0, num_samples=10, batch_size=8, seed=0, world_size=2)


def test_loader_is_identical_for_any_worker_count_and_start_step():
    ds = SyntheticVideoDataset(SyntheticVideoConfig(num_frames=4, height=16, width=16, num_samples=64))
    coll = MaskCollator(MaskGenerator(DEFAULT_MASKS, (2, 4, 4), seed=0))
    a = list(build_loader(ds, coll, batch_size=4, seed=0, start_step=0, max_steps=4, num_workers=0))
    b = list(build_loader(ds, coll, batch_size=4, seed=0, start_step=2, max_steps=4, num_workers=2))
    assert [x["step"] for x in a] == [0, 1, 2, 3] and [x["step"] for x in b] == [2, 3]
    for x, y in zip(a[2:], b):
        assert torch.equal(x["clips"], y["clips"]) and torch.equal(x["indices"], y["indices"])
        for (c1, t1), (c2, t2) in zip(x["masks"], y["masks"]):
            assert torch.equal(c1, c2) and torch.equal(t1, t2)
    assert abs(a[0]["clips"].mean().item()) < 2.5  # normalised with ImageNet statistics
