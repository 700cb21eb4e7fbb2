"""Masked predictions decoded to pixels: what the prediction may see, the baselines, the files."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from videojepa.config import load_config
from videojepa.training.decoder import DecoderRunConfig, DecoderTrainer, load_decoder, load_jepa
from videojepa.training.trainer import Pretrainer
from videojepa.viz.predictions import draw_masks, evaluate, hidden_psnr, nearest_visible, predict, show_predictions


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    cfg, _ = load_config("cpu_test", ["train.max_steps=2"])
    Pretrainer(cfg, d, progress=False).fit()
    for init in ("trained", "random"):
        DecoderTrainer(DecoderRunConfig.make([f"source.checkpoint={d}", f"source.init={init}", "model.hidden=32",
                                              "data.batch_size=4", "train.steps=2"]), progress=False).fit()
    return d


def test_nearest_visible_on_a_line():
    ctx = torch.tensor([0, 5, 9])
    tgt = torch.tensor([1, 3, 4, 7, 8])
    assert nearest_visible(ctx, tgt, (1, 1, 10)).tolist() == [0, 5, 5, 5, 9]  # 3 is 2 from 5 and 3 from 0
    # in 3-D: (t, h, w) distance, not id distance
    assert nearest_visible(torch.tensor([1, 4]), torch.tensor([0]), (1, 2, 3)).tolist() == [1]


def _setup(run):
    jepa, cfg, _ = load_jepa(run)
    dec, _ = load_decoder(run / "decoder")
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(3, cfg.data.num_frames, *cfg.data.crop_size, generator=g)
    grid = jepa.encoder.grid_of(jepa.encoder.prepare_input(clip.unsqueeze(0)))
    return jepa, cfg, dec, clip, grid


def test_the_prediction_never_sees_the_hidden_tubelets(run):
    jepa, cfg, dec, clip, grid = _setup(run)
    ctx, tgt = draw_masks(cfg, grid, seed=0)[1]
    a = predict(jepa, dec, clip, ctx, tgt, 1)
    from videojepa.models.decoder import unpatchify
    from videojepa.training.objectives import patchify

    pix = patchify(clip.unsqueeze(0), 2, jepa.encoder.cfg.patch_size)
    pix[0, tgt] = torch.randn_like(pix[0, tgt])  # new pixels behind the mask only
    other = unpatchify(pix, grid, 2, jepa.encoder.cfg.patch_size)[0]
    b = predict(jepa, dec, other, ctx, tgt, 1)
    assert torch.allclose(a["prediction"], b["prediction"], atol=1e-5)
    assert torch.equal(a["copy_nearest"], b["copy_nearest"])
    assert not torch.allclose(a["target_decoded"][tgt], b["target_decoded"][tgt], atol=1e-4)  # the ceiling sees them
    assert hidden_psnr(a, "prediction", (0.5,) * 3, (0.25,) * 3) != hidden_psnr(b, "prediction", (0.5,) * 3, (0.25,) * 3)


def test_copy_nearest_is_perfect_on_a_constant_clip(run):
    jepa, cfg, dec, _, grid = _setup(run)
    clip = torch.full((3, cfg.data.num_frames, *cfg.data.crop_size), 0.3)
    ctx, tgt = draw_masks(cfg, grid, seed=0)[0]
    out = predict(jepa, dec, clip, ctx, tgt, 0)
    assert hidden_psnr(out, "copy_nearest", (0.5,) * 3, (0.25,) * 3) == float("inf")


def test_evaluate_scores_every_mask_config(run):
    jepa, cfg, dec, clip, _ = _setup(run)
    rj, _, _ = load_jepa(run, "random")
    rd, _ = load_decoder(run / "decoder-random")
    res = evaluate(jepa, dec, [clip, clip * 0.5], cfg, random_pair=(rj, rd))
    assert set(res) == {"prediction", "copy_nearest", "target_decoded", "random_init"}
    assert all(len(v["per_config"]) == 2 and v["n"] == 4 and np.isfinite(v["mean"]) for v in res.values())


def test_show_predictions_writes_every_panel(run, tmp_path):
    r = show_predictions("synthetic:val", run, run / "decoder", tmp_path, random_decoder=run / "decoder-random")
    frames = Image.open(r["gif"]).n_frames
    assert frames == 4  # cpu_test clips have 4 frames
    info = json.loads(r["json"].read_text())
    assert set(info["psnr_db"]) == {"prediction", "copy_nearest", "target_decoded", "random_init"}
    assert info["mask_config"] == 1 and 0 < info["hidden_tokens"] < info["tokens"]
    assert r["png"].stat().st_size > 0
    with pytest.raises(ValueError, match="init='trained'"):
        show_predictions("synthetic:val", run, run / "decoder", tmp_path, random_decoder=run / "decoder")


def test_cli_decoder_train_and_show_predictions(run, tmp_path, capsys):
    from videojepa.cli import main

    assert main(["decoder", "train", "--checkpoint", str(run), "--out", str(tmp_path / "dec"), "--steps", "2",
                 "--no-progress", "model.hidden=16"]) == 0
    assert (tmp_path / "dec" / "decoder.json").is_file()
    assert main(["show", "predictions", "synthetic:val", "--checkpoint", str(run), "--decoder", str(tmp_path / "dec"),
                 "--out", str(tmp_path / "pics"), "--format", "gif", "png", "--mask-config", "0"]) == 0
    out = capsys.readouterr().out
    assert "copy nearest visible" in out and (tmp_path / "pics" / "predictions.png").is_file()
    assert not (tmp_path / "pics" / "predictions.mp4").exists()
    assert main(["show", "predictions", "synthetic:val", "--checkpoint", str(run), "--decoder", str(tmp_path / "no"),
                 "--out", str(tmp_path / "pics")]) == 2
    assert "decoder train" in capsys.readouterr().err
    assert main(["decoder", "train", "--checkpoint", str(run), "model.nope=1"]) == 2


def test_a_run_directory_loads_as_its_newest_checkpoint_and_other_jobs_are_named(run, tmp_path):
    import videojepa
    from videojepa.interop.weights import WeightsError
    from videojepa.training.checkpoint import find_latest

    a, b = videojepa.load(run), videojepa.load(find_latest(run / "checkpoints"))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(WeightsError, match="without a checkpoint"):
        videojepa.load(tmp_path / "empty")
    torch.save({"format": "videojepa-finetune/1", "encoder": {}, "head": {}}, tmp_path / "ft.pt")
    with pytest.raises(WeightsError, match="export/ folder"):
        videojepa.load(tmp_path / "ft.pt")
