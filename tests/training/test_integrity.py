"""Checkpoints that cannot be silently wrong: checksums, resume past damaged files, safe retention and saves."""
import errno
import json
import shutil
import subprocess

import pytest
import torch

import videojepa
from videojepa.config import load_config
from videojepa.training import checkpoint as ck
from videojepa.training.checkpoint import (CheckpointCorruptError, CheckpointError, UnverifiedWarning, list_checkpoints,
                                           load_checkpoint, save_checkpoint, verify_file)
from videojepa.training.trainer import Pretrainer


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(*over):
    cfg, _ = load_config("cpu_test", ["train.max_steps=6", "train.checkpoint_every=3", "train.keep_checkpoints=3",
                                      *over])
    return cfg


def _params(tr):
    return {k: v.detach().clone() for k, v in tr.model.state_dict().items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-step run with checkpoints at steps 3 and 6."""
    out = tmp_path_factory.mktemp("ref")
    torch.set_num_threads(1)
    tr = Pretrainer(_cfg(), out, progress=False)
    tr.fit()
    return out, _params(tr)


def _damage(path, kind):
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero-length":
        path.write_bytes(b"")
    elif kind == "bit-flipped":
        b = bytearray(data)
        mid = len(b) // 2
        b[mid:mid + 64] = bytes(x ^ 0xFF for x in b[mid:mid + 64])
        path.write_bytes(bytes(b))
    elif kind == "wrong-format":  # a readable file with a valid checksum, but not a checkpoint of this run's kind
        torch.save({"format": "something-else", "weights": torch.zeros(3)}, path)
        ck.write_digest(path)


def test_checksum_is_written_with_the_file_and_sha256sum_agrees(reference):
    out, _ = reference
    files = [p for _, p in list_checkpoints(out / "checkpoints")]
    assert [p.name for p in files] == ["step_00000003.pt", "step_00000006.pt"]
    for p in files:
        assert verify_file(p)
        r = subprocess.run(["sha256sum", "-c", p.name + ".sha256"], cwd=p.parent, capture_output=True, text=True)
        if r.returncode != 127:  # sha256sum present
            assert r.returncode == 0 and "OK" in r.stdout


@pytest.mark.parametrize("kind", ["truncated", "zero-length", "bit-flipped", "wrong-format"])
def test_resume_steps_past_a_damaged_newest_checkpoint(reference, tmp_path, kind, capsys):
    out, ref = reference
    shutil.copytree(out / "checkpoints", tmp_path / "checkpoints")
    newest = tmp_path / "checkpoints" / "step_00000006.pt"
    _damage(newest, kind)
    tr = Pretrainer(_cfg(), tmp_path, progress=False)
    assert tr.step == 3 and tr.resumed_from.name == "step_00000003.pt"
    err = capsys.readouterr().err
    assert "skipping damaged checkpoint" in err and "step_00000006.pt" in err
    assert not newest.exists() and (tmp_path / "checkpoints" / "step_00000006.pt.corrupt").is_file()  # kept aside
    tr.fit()
    got = _params(tr)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, msg=k)


def test_all_damaged_is_an_error_naming_every_file(reference, tmp_path):
    out, _ = reference
    shutil.copytree(out / "checkpoints", tmp_path / "checkpoints")
    _damage(tmp_path / "checkpoints" / "step_00000003.pt", "truncated")
    _damage(tmp_path / "checkpoints" / "step_00000006.pt", "bit-flipped")
    with pytest.raises(CheckpointCorruptError) as e:
        Pretrainer(_cfg(), tmp_path, progress=False)
    msg = str(e.value)
    assert "step_00000003.pt" in msg and "step_00000006.pt" in msg and "checksum mismatch" in msg
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.corrupt")) == ["step_00000003.pt.corrupt",
                                                                                  "step_00000006.pt.corrupt"]


def test_resume_path_to_a_damaged_file_is_an_error_not_a_fallback(reference, tmp_path):
    out, _ = reference
    shutil.copytree(out / "checkpoints", tmp_path / "checkpoints")
    bad = tmp_path / "checkpoints" / "step_00000006.pt"
    _damage(bad, "bit-flipped")
    with pytest.raises(CheckpointCorruptError, match="step_00000006.pt.*expected sha256"):
        Pretrainer(_cfg(), tmp_path, progress=False, resume=str(bad))
    assert bad.is_file()  # an explicit path is never moved


def test_failed_save_leaves_earlier_checkpoints_intact(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    save_checkpoint({"step": 1, "w": torch.randn(64, 64)}, folder, 1, keep=1)
    calls = {"n": 0}
    real = ck.HashingWriter.write

    def full_disk(self, b):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, b)

    monkeypatch.setattr(ck.HashingWriter, "write", full_disk)
    with pytest.raises(CheckpointError, match="No space left.*step_00000001.pt"):
        save_checkpoint({"step": 2, "w": torch.randn(256, 256)}, folder, 2, keep=1)
    assert [p.name for _, p in list_checkpoints(folder)] == ["step_00000001.pt"]  # not pruned, still loadable
    assert load_checkpoint(folder / "step_00000001.pt")["step"] == 1
    assert not list(folder.glob("*.tmp"))


def test_old_checkpoint_without_checksum_loads_with_a_warning(tmp_path):
    p = tmp_path / "step_00000001.pt"
    torch.save({"step": 1}, p)
    with pytest.warns(UnverifiedWarning, match="could not be verified"):
        assert load_checkpoint(p)["step"] == 1


def test_exported_model_with_a_flipped_byte_refuses_to_load(tmp_path):
    from videojepa.interop.weights import Weights, WeightsError, write_videojepa

    enc = videojepa.create_model("vit_test")
    w = Weights(source="test", format="videojepa", encoder=enc.cfg, states={"encoder": enc.state_dict()})
    dst = write_videojepa(w, tmp_path / "export", parts=["encoder"])
    assert "weights_sha256" in json.loads((dst / "config.json").read_text())
    assert isinstance(videojepa.load(dst), torch.nn.Module)
    st = dst / "model.safetensors"
    b = bytearray(st.read_bytes())
    b[len(b) // 2] ^= 0x01
    st.write_bytes(bytes(b))
    with pytest.raises(WeightsError, match="model.safetensors: checksum mismatch: expected sha256"):
        videojepa.load(dst)


def test_run_checkpoint_loaded_by_name_is_verified(reference, tmp_path):
    out, _ = reference
    p = tmp_path / "step_00000006.pt"
    shutil.copy(out / "checkpoints" / "step_00000006.pt", p)
    shutil.copy(out / "checkpoints" / "step_00000006.pt.sha256", tmp_path)
    videojepa.load(p)
    _damage(p, "bit-flipped")
    with pytest.raises(ValueError, match="checksum mismatch"):
        videojepa.load(p)


def test_feature_shard_with_a_flipped_byte_is_refused(tmp_path):
    from videojepa.evaluation.store import FeatureStore, load_features

    store = FeatureStore(tmp_path / "feats", {"k": 1}, num_items=4, shard_size=4, file_format="safetensors")
    store.write(0, {"features": torch.randn(4, 3, 8), "labels": torch.arange(4), "indices": torch.arange(4)})
    load_features(tmp_path / "feats")
    shard = next((tmp_path / "feats").glob("shard_*.safetensors"))
    b = bytearray(shard.read_bytes())
    b[-5] ^= 0x10
    shard.write_bytes(bytes(b))
    with pytest.raises(CheckpointCorruptError, match="shard_00000.safetensors: checksum mismatch"):
        load_features(tmp_path / "feats")
