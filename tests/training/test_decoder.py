"""The light pixel decoder: layout, training on the shared engine, resume, the random-init baseline, exports."""
import pytest
import torch

from videojepa.config import load_config
from videojepa.models.decoder import DecoderConfig, PixelDecoder, unpatchify
from videojepa.training.checkpoint import CheckpointCorruptError
from videojepa.training.decoder import DecoderRunConfig, DecoderTrainer, load_decoder, load_jepa
from videojepa.training.objectives import patchify
from videojepa.training.trainer import Pretrainer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    cfg, _ = load_config("cpu_test", ["train.max_steps=2"])
    Pretrainer(cfg, d, progress=False).fit()
    return d


def _dcfg(run, *over):
    return DecoderRunConfig.make([f"source.checkpoint={run}", "model.hidden=32", "data.batch_size=4",
                                  "train.checkpoint_every=3", *over])


def test_unpatchify_inverts_patchify():
    x = torch.randn(2, 3, 4, 8, 12)
    p = patchify(x, 2, 4)
    assert p.shape == (2, 2 * 2 * 3, 2 * 4 * 4 * 3)
    assert torch.equal(unpatchify(p, (2, 2, 3), 2, 4, 3), x)


def test_decoder_positions_and_subsets():
    dec = PixelDecoder(DecoderConfig(embed_dim=8, grid=(2, 2, 2), tubelet_size=1, patch_size=2, hidden=16))
    tok = torch.randn(1, 8, 8)
    full = dec(tok)
    ids = torch.tensor([[5, 2]])
    part = dec(tok[:, [5, 2]], ids)
    assert torch.allclose(part, full[:, [5, 2]], atol=1e-6)  # a token decodes the same alone or with the others
    assert not torch.allclose(dec(tok[:, [5]], torch.tensor([[5]])), dec(tok[:, [5]], torch.tensor([[2]])))
    with pytest.raises(ValueError, match="tokens without ids"):
        dec(tok[:, :3])


def test_training_lowers_the_loss_and_resumes_bit_identically(run, tmp_path):
    full = DecoderTrainer(_dcfg(run, "train.steps=6", "train.log_every=1"), tmp_path / "full", progress=False)
    full.fit()
    rows = [float(r["loss"]) for r in __import__("csv").DictReader(open(tmp_path / "full" / "metrics.csv"))]
    assert rows[-1] < rows[0]
    part = DecoderTrainer(_dcfg(run, "train.steps=6", "train.log_every=1"), tmp_path / "part", progress=False)
    part.fit(until=3)
    resumed = DecoderTrainer(_dcfg(run, "train.steps=6", "train.log_every=1"), tmp_path / "part", progress=False)
    assert resumed.step == 3
    resumed.fit()
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="model"):
        DecoderTrainer(_dcfg(run, "train.steps=6", "model.hidden=16"), tmp_path / "part", progress=False)


def test_random_init_is_the_pretraining_runs_own_initialisation(run):
    cfg, _ = load_config("cpu_test", ["train.max_steps=2"])
    fresh = Pretrainer(cfg, run / "unused", progress=False, resume="none")
    rnd, _, _ = load_jepa(run, "random")
    trained, _, _ = load_jepa(run)
    for part in ("encoder", "predictor", "target_encoder"):
        a, b = getattr(fresh.model, part).state_dict(), getattr(rnd, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert not all(torch.equal(v, rnd.encoder.state_dict()[k]) for k, v in trained.encoder.state_dict().items())


def test_export_is_verified_and_strict(run, tmp_path):
    tr = DecoderTrainer(_dcfg(run, "train.steps=2"), tmp_path / "d", progress=False)
    tr.fit()
    dec, meta = load_decoder(tmp_path / "d")
    assert meta["init"] == "trained" and meta["decoder"]["embed_dim"] == tr.jepa.target_encoder.cfg.embed_dim
    w = tmp_path / "d" / "decoder.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-5] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorruptError, match="damaged"):
        load_decoder(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="decoder train"):
        load_decoder(tmp_path)


def test_refuses_what_is_not_a_pretraining_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such"):
        load_jepa(tmp_path / "nope.pt")
