"""``videojepa report``: one self-contained HTML page about a run, checked as text and in a headless browser."""
import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from videojepa.cli import main
from videojepa.config import load_config
from videojepa.training.trainer import Pretrainer
from videojepa.viz import report as rep
from videojepa.viz.report import SECTIONS, collapse_verdict, default_video, mask_figures, write_report

_IMG = re.compile(r'<img[^>]*\ssrc="data:(image/(?:png|gif));base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real, tiny pretraining run: 3 steps of the unit-test preset, diagnostics at steps 1 and 2."""
    out = tmp_path_factory.mktemp("report") / "run"
    cfg, _ = load_config("cpu_test", ["train.max_steps=3", "train.diag_every=2"])
    Pretrainer(cfg, out, progress=False).fit()
    return out


@pytest.fixture(scope="module")
def page(run):
    """The full report of ``run`` (features included, no decoder) and its text."""
    lines = []
    path = write_report(run, log=lines.append)
    return path, path.read_text(), lines


def _copy(run: Path, dst: Path, *drop: str) -> Path:
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("report*", *drop))
    return dst


def _section(text: str, name: str) -> str:
    m = re.search(rf'<section id="{name}"[^>]*>(.*?)</section>', text, re.S)
    assert m, name
    return m.group(1)


def test_page_has_every_section_and_prints_progress(page, run):
    path, text, lines = page
    assert path == run / "report.html"
    for name in SECTIONS:
        assert f'<section id="{name}" data-status="ok"' in text, (name, _section(text, name)[:400])
    assert any(line.startswith("report: wrote") for line in lines)
    assert all(any(line.startswith(f"report: {n}") for line in lines) for n in SECTIONS)
    assert "vit_test" in _section(text, "config")
    summary = _section(text, "summary")
    assert "3 of 3" in summary and "loss first -&gt; last" in summary and "clips/s" in summary
    curves = _section(text, "curves")
    for col in ("loss", "lr", "grad_norm", "target_std", "target_token_std", "target_erank"):
        assert col in curves
    assert "metrics.png" not in curves  # drawn from metrics.csv, not the run's own PNG
    diag = _section(text, "diagnostics")
    assert re.search(r'class="verdict (ok|warning|collapsed)"', diag) and "target_erank" in diag
    masks = _section(text, "masks")
    assert masks.count("<img") == 2 and "mask 0: multi-block" in masks and "mask 1: multi-block" in masks
    feats = _section(text, "features")
    assert "synthetic:val" in feats and "step_00000003.pt" in feats and feats.count("<img") == 2
    pred = _section(text, "predictions")
    assert "No decoder was trained" in pred and "videojepa decoder train --checkpoint" in pred
    assert "synthetic:train" in pred


def test_self_contained_no_network_references(page):
    _, text, _ = page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and not re.search(r"<script[^>]*\ssrc=", text) and "@import" not in text
    assert re.search(r"<script>.*data-images-loaded.*</script>", text, re.S)


def test_embedded_images_decode(page):
    _, text, _ = page
    imgs = _IMG.findall(text)
    assert len(imgs) == text.count("<img") >= 5  # curves, 2 masks, features gif + png
    kinds = set()
    for mime, b64 in imgs:
        im = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
        im.load()
        assert im.format == mime.split("/")[1].upper() and im.width > 0 and im.height > 0
        kinds.add(im.format)
    assert kinds == {"PNG", "GIF"}


def test_missing_summary_and_broken_section_are_explained(run, tmp_path, monkeypatch):
    r = _copy(run, tmp_path / "r", "summary.json")

    def boom(*a, **k):
        raise RuntimeError("mask sampler exploded")

    monkeypatch.setattr(rep, "section_masks", boom)
    text = write_report(r, features=False, predictions=False, log=None).read_text()
    s = _section(text, "summary")
    assert "no summary.json" in s and "step_00000003.pt" in s
    assert 'id="summary" data-status="ok"' in text  # still a useful section: the checkpoints
    assert 'id="masks" data-status="failed"' in text and "mask sampler exploded" in _section(text, "masks")
    assert "--no-features" in _section(text, "features") and "--no-predictions" in _section(text, "predictions")
    assert 'id="curves" data-status="ok"' in text


def test_empty_run_directory_still_gives_a_page(tmp_path):
    (tmp_path / "empty").mkdir()
    text = write_report(tmp_path / "empty", log=None).read_text()
    for name in SECTIONS:
        assert f'<section id="{name}"' in text
    assert "no config.yaml" in _section(text, "config") and "no metrics.csv" in _section(text, "curves")
    assert "no checkpoint" in _section(text, "features")


def test_predictions_with_a_decoder(run, tmp_path):
    """A real decoder trained on the run (and its random-init baseline): the section shows the panels, the PSNR
    table and says by how much the predictions beat (or not) the copy-nearest baseline."""
    from videojepa.training.decoder import DecoderRunConfig, DecoderTrainer

    r = _copy(run, tmp_path / "r")
    for init in ("trained", "random"):
        DecoderTrainer(DecoderRunConfig.make([f"source.checkpoint={r}", f"source.init={init}", "model.hidden=16",
                                              "data.batch_size=2", "train.steps=1"]), progress=False).fit()
    text = write_report(r, features=False, video="synthetic:val:4", log=None).read_text()
    pred = _section(text, "predictions")
    assert 'id="predictions" data-status="ok"' in text, pred[:500]
    assert pred.count("<img") >= 2 and pred.count(" dB") >= 4
    assert "copy-nearest-visible baseline" in pred and "step_00000003.pt" in pred


def test_predictions_section_skips_a_world_decoder(run, tmp_path):
    r = _copy(run, tmp_path / "r")
    (r / "decoder").mkdir()
    (r / "decoder" / "decoder.json").write_text('{"format": "videojepa-decoder/1", "decoder": {"kind": "frame"}}')
    text = write_report(r, features=False, video="synthetic:val:4", log=None).read_text()
    assert 'id="predictions" data-status="skipped"' in text and "world-model" in _section(text, "predictions")


def test_cli(run, tmp_path, capsys):
    out = tmp_path / "x" / "page.html"
    assert main(["report", str(run), "--out", str(out), "--no-features", "--no-predictions"]) == 0
    o = capsys.readouterr().out
    assert out.is_file() and "report: masks" in o and str(out) in o
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_mask_figures_use_the_runs_masks(run):
    cfg, _ = load_config(run / "config.yaml")
    figs = mask_figures(cfg, samples=2)
    assert len(figs) == len(cfg.mask.configs) == 2
    for f in figs:
        assert 0 < f["context_frac"] < 1 and 0 < f["target_frac"] < 1
        assert f["context_frac"] + f["target_frac"] <= 1 + 1e-6
        assert f["grid"] == (2, 4, 4) and "synthetic" in f["source"]
        Image.open(io.BytesIO(f["png"])).load()
    assert figs[1]["target_frac"] > figs[0]["target_frac"]  # one block of 50% hides more than two of 15%


def test_collapse_verdict_and_default_video():
    assert collapse_verdict(0.8, 0.5, 1.02, 128)[0] == "collapsed"
    assert collapse_verdict(0.001, 0.001, 5.0, 128)[0] == "collapsed"
    assert collapse_verdict(0.8, 0.01, 30.0, 128)[0] == "warning"  # clip-global
    assert collapse_verdict(0.8, 0.5, 3.0, 128)[0] == "warning"  # low rank
    assert collapse_verdict(0.8, 0.5, 30.0, 128, first_erank=90.0)[0] == "warning"  # falling
    level, words = collapse_verdict(0.8, 0.5, 30.0, 128, first_erank=35.0)
    assert level == "ok" and "30.0 of 128" in words
    assert default_video({"data": {"source": "synthetic"}}) == "synthetic:val"
    assert default_video({"data": {"source": "files", "datasets": ["/d/a.csv", "/d/b.csv"]}}) == "/d/a.csv"
    assert default_video({}) == "synthetic:val" and default_video(None) == "synthetic:val"
    assert default_video({"data": {"train": "t.csv", "val": "v.csv"}}) == "v.csv"  # a fine-tuning run
    assert default_video({"data": {"train": "t.csv", "val": None}}) == "t.csv"


# --------------------------------------------------------------------------- a real browser

_BROWSERS = ("chromium-headless-shell", "headless_shell", "chromium", "chromium-browser", "google-chrome")
_PATHS = ("/usr/lib/chromium-headless-shell/chromium-headless-shell", "/usr/lib/chromium-headless-shell/headless_shell",
          "/usr/lib/chromium/chromium", "/usr/lib/chromium/headless_shell")


def _browser() -> str | None:
    for name in _BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    return next((p for p in _PATHS if Path(p).is_file()), None)


def test_page_renders_in_headless_chromium(page, tmp_path):
    exe = _browser()
    if exe is None:
        pytest.skip("no headless Chromium installed (apt-get install chromium-headless-shell)")
    path, _, _ = page
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.resolve().as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total, f"the page's load script did not run: {body.group(0)}"
    assert int(total.group(1)) >= 5 and loaded.group(1) == total.group(1)
    for name in SECTIONS:
        assert f'id="{name}"' in dom
