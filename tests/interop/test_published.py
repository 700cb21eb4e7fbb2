"""The registry of published weights and the download cache (nothing is downloaded from the network)."""
import dataclasses
import hashlib
import re

import pytest
import torch

import videojepa
from videojepa.cli import main
from videojepa.interop import published
from videojepa.interop.published import WeightsNotFoundError, cached_path, fetch, get_entry, list_entries


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOJEPA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_registry_is_complete_and_honest():
    names = {e.name for e in list_entries()}
    for n in ("vjepa1-vitl16", "vjepa1-vith16", "vjepa1-vith16-384", "vjepa2-vitl", "vjepa2-vith", "vjepa2-vitg",
              "vjepa2-vitg-384", "vjepa2-ac-vitg", "vjepa1-vitl16-k400-probe", "vjepa1-vith16-384-inat-probe",
              "vjepa2-vitl-ssv2-probe", "vjepa2-vitg-384-diving48-probe"):
        assert n in names
    for e in list_entries():
        assert e.url.startswith("https://dl.fbaipublicfiles.com/" + ("jepa/" if e.family.startswith("vjepa1") else "vjepa2/"))
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
        p = e.preprocessing
        assert p["resize_short_side"] == int(p["crop_size"] * 256 / 224)
        assert p["mean"] == [0.485, 0.456, 0.406] and p["std"] == [0.229, 0.224, 0.225]
        if e.kind == "probe":
            assert e.base in names
        else:
            assert e.evaluated_with in ("target_encoder", "encoder") and e.arch
    assert get_entry("vjepa2-vitg").hints()["encoder"]["num_heads"] == 22
    assert get_entry("vjepa2-vitl-diving48-probe").eval["out_layers"] == [17, 19, 21, 23]
    with pytest.raises(ValueError, match="did you mean vjepa2-vitl"):
        get_entry("vjepa2-vit1")


def test_offline_error_says_where_to_put_the_file(cache):
    e = get_entry("vjepa2-vitl")
    assert cached_path(e) == cache / "vjepa2-vitl" / "vitl.pt"
    with pytest.raises(WeightsNotFoundError) as err:
        videojepa.load("vjepa2-vitl")  # tests run with HF_HUB_OFFLINE=1: no download is attempted
    assert "https://dl.fbaipublicfiles.com/vjepa2/vitl.pt" in str(err.value)
    assert str(cache / "vjepa2-vitl" / "vitl.pt") in str(err.value)


def test_download_verifies_and_caches(cache, tmp_path):
    src = tmp_path / "remote.bin"
    src.write_bytes(b"x" * 1000)
    good = dataclasses.replace(get_entry("vjepa2-vitl"), url=src.as_uri(), size_bytes=1000,
                               sha256=hashlib.sha256(b"x" * 1000).hexdigest())
    good = dataclasses.replace(good, name="test-entry")
    path = fetch(good, download=True)
    assert path == cache / "test-entry" / "remote.bin" and path.read_bytes() == b"x" * 1000
    assert fetch(good, download=False) == path  # cached: no download needed
    bad = dataclasses.replace(good, name="test-bad", sha256="0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        fetch(bad, download=True)
    assert not (cache / "test-bad" / "remote.bin").exists() and not list((cache / "test-bad").glob("*.part"))
    missing = dataclasses.replace(good, name="test-missing", url=(tmp_path / "nope.bin").as_uri())
    with pytest.raises(WeightsNotFoundError, match="could not download"):
        fetch(missing, download=True)


def test_load_by_name_from_the_cache(cache, layouts):
    _, enc, tgt, pred = layouts.vjepa2_models()
    path = cached_path(get_entry("vjepa2-vitl"))
    path.parent.mkdir(parents=True)
    torch.save(layouts.vjepa2_file(enc, tgt, pred, 32, 96), path)
    m = videojepa.load("vjepa2-vitl", config={"encoder": {"num_heads": 4}})
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), tgt(x))
    cfg = m.pretrained_cfg
    assert cfg["name"] == "vjepa2-vitl" and cfg["evaluated_with"] == "target_encoder"
    assert cfg["preprocessing"]["crop_size"] == 256 and cfg["preprocessing"]["resize_short_side"] == 292


def test_weights_cli(cache, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for e in list_entries():
        assert e.name in out and e.url in out
    assert main(["weights", "list", "--kind", "probe"]) == 0
    assert "vjepa2-vitl.pt" not in capsys.readouterr().out and "vitl.pt" in out
    assert main(["weights", "path", "vjepa1-vitl16"]) == 1  # not cached yet
    assert capsys.readouterr().out.strip() == str(cache / "vjepa1-vitl16" / "vitl16.pth.tar")
    assert not published.downloads_allowed()  # the test session is offline (conftest)
    assert main(["weights", "download", "vjepa1-vitl16"]) == 1
    assert "downloads are off" in capsys.readouterr().err
