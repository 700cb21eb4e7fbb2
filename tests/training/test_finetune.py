"""Fine-tuning: layer decay, few-label subsets, resume, the exported classifier, errors, a tiny real run."""
import json

import numpy as np
import pytest
import torch

import videojepa
from videojepa.cli import main
from videojepa.data.errors import DataError
from videojepa.evaluation.fewshot import stratified_subset
from videojepa.models.pooler import ProbeConfig, build_classifier
from videojepa.training.finetune import Finetuner, mix_batch, stage_lr
from videojepa.training.finetune_config import load_finetune_config
from videojepa.training.optim import layer_decay_param_groups

TINY = ["model.name=vit_test", "model.overrides={}", "data.num_frames=4", "data.crop_size=16", "data.batch_size=4",
        "data.eval_batch_size=16", "train.log_every=1", "optim.warmup_steps=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(*over):
    return load_finetune_config(None, TINY + list(over))


def test_layer_decay_groups_and_lrs():
    enc = videojepa.create_model("vit_test")  # 2 blocks
    head = build_classifier(ProbeConfig(embed_dim=32, num_heads=2, depth=1, num_classes=3))
    groups = layer_decay_param_groups(enc, head, weight_decay=0.05, layer_decay=0.5, head_lr_scale=10.0)
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    # VideoMAE's mapping with L = 2: patch embedding -> 0.5**3, block i -> 0.5**(2 - i), final norm and head -> 1 (x10)
    assert scale["encoder.patch_embed.proj.weight"] == 0.125
    assert scale["encoder.blocks.0.attn.qkv.weight"] == 0.25
    assert scale["encoder.blocks.1.mlp.fc1.weight"] == 0.5
    assert scale["encoder.norm.weight"] == 1.0
    assert scale["head.linear.weight"] == 10.0
    assert wd["encoder.blocks.0.attn.qkv.weight"] == 0.05 and wd["encoder.blocks.0.attn.qkv.bias"] == 0.0
    assert wd["encoder.norm.weight"] == 0.0 and wd["head.pooler.query_tokens"] == 0.0
    n_params = sum(1 for _ in enc.parameters()) + sum(1 for _ in head.parameters())
    assert sum(len(g["names"]) for g in groups) == n_params


def test_two_stage_schedule():
    f = [stage_lr(s, total=20, freeze_steps=8, warmup=2, final_ratio=0.0) for s in range(20)]
    assert [st for st, _ in f] == [0] * 8 + [1] * 12
    assert f[0][1] < f[1][1] < f[2][1] == pytest.approx(1.0)  # warmup, then the peak
    assert f[7][1] == pytest.approx(0.0, abs=1e-9)  # stage 0 ends its cosine
    assert f[8][1] < f[10][1] == pytest.approx(1.0)  # a fresh warmup after unfreezing
    assert f[19][1] == pytest.approx(0.0, abs=1e-9)


def test_mixup_targets_sum_to_one_and_are_reproducible():
    clips = torch.randn(4, 3, 2, 8, 8)
    labels = torch.tensor([0, 1, 2, 1])
    for mix in ({"mixup": 0.8, "cutmix": 0.0}, {"mixup": 0.0, "cutmix": 1.0}):
        a = mix_batch(clips, labels, 3, smoothing=0.1, mix_prob=1.0, switch_prob=0.5,
                      gen=torch.Generator().manual_seed(3), **mix)
        b = mix_batch(clips, labels, 3, smoothing=0.1, mix_prob=1.0, switch_prob=0.5,
                      gen=torch.Generator().manual_seed(3), **mix)
        torch.testing.assert_close(a[1].sum(1), torch.ones(4))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], clips)


def test_subset_is_probes_and_manifest_is_saved(tmp_path):
    cfg = _cfg("data.train=synthetic:train:280", "data.val=null", "data.label_fraction=0.1", "data.split_seed=2",
               "train.steps=1")
    ft = Finetuner(cfg, tmp_path, progress=False)
    labels = ft.train_set.base.labels(280)
    assert ft.split["indices"] == stratified_subset(labels, 0.1, seed=2).tolist()
    assert len(ft.split["indices"]) == 28 and len(set(ft.split["labels"])) == 14
    ft.fit()
    ft.finish()
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["indices"] == ft.split["indices"] and split["classes"][0] == "move_right"


def _params(ft):
    return {k: v.detach().clone() for k, v in ft.model.state_dict().items()}


def test_resume_matches_uninterrupted(tmp_path):
    over = ["data.train=synthetic:train:28", "data.val=null", "train.steps=4", "train.checkpoint_every=2",
            "optim.freeze_steps=1", "aug.mixup=0.8", "aug.cutmix=1.0", "model.drop_path=0.2", "head.dropout=0.3"]
    full = Finetuner(_cfg(*over), tmp_path / "full", progress=False)
    full.fit()
    part = Finetuner(_cfg(*over), tmp_path / "part", progress=False)
    part.fit(until=2)
    resumed = Finetuner(_cfg(*over), tmp_path / "part", progress=False)
    assert resumed.step == 2 and resumed.resumed_from is not None
    resumed.fit()
    a, b = _params(full), _params(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    rows = (tmp_path / "part" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(4))
    with pytest.raises(ValueError, match="head"):
        Finetuner(_cfg(*over, "head.depth=2"), tmp_path / "part", progress=False)


def test_tiny_finetune_learns(tmp_path):
    """Two classes, 16 clips, 60 steps from random init: the training loss falls below its first value."""
    cfg = _cfg("data.train=synthetic:train:16", "data.val=synthetic:val:16", "train.steps=60", "optim.lr=3e-4",
               "optim.final_lr=3e-4", "optim.layer_decay=1.0", "optim.weight_decay=0.0", "train.eval_every=60",
               "aug.label_smoothing=0.0", "model.drop_path=0.0",
               "data.synthetic={classes: [move_right, move_down], num_distractors: 0, noise: 0.0}")
    ft = Finetuner(cfg, tmp_path, progress=False)
    s = ft.fit()
    losses = [float(r.split(",")[1]) for r in (tmp_path / "metrics.csv").read_text().strip().splitlines()[1:]]
    assert np.mean(losses[-10:]) < 0.92 * np.mean(losses[:3])
    assert s["val_top1_last"] is not None and (tmp_path / "metrics.png").is_file()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    rc = main(["finetune", "--train", "synthetic:train:140", "--val", "synthetic:val:28", "--test", "synthetic:test:14",
               "--steps", "2", "--head-depth", "4", "--segments", "2", "--views", "2", "--out", str(out), "--no-progress",
               *TINY])
    assert rc == 0
    return out


def test_export_loads_and_classify_reads_it(exported, capsys):
    res = json.loads((exported / "results.json").read_text())
    assert res["test"]["segments"] == 2 and 0.0 <= res["test"]["top1"] <= 1.0 and len(res["classes"]) == 14
    assert (exported / "confusion.png").is_file()
    clf = videojepa.load(exported / "export")
    assert type(clf).__name__ == "VideoClassifier" and clf.pretrained_cfg["labels"][0] == "move_right"
    x = torch.rand(2, 3, 4, 16, 16)
    assert clf(x).shape == (2, 14)
    capsys.readouterr()
    assert main(["classify", "synthetic:test:14", "--probe", str(exported / "export"), "--item", "0", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["label"] == res["classes"][videojepa.data.synthetic.SyntheticVideoDataset(
        videojepa.data.synthetic.SyntheticVideoConfig(num_frames=4, height=16, width=16, num_samples=14, seed=3)).label(0)]
    # the classifier classify used is the exported one: its top class is the argmax of the loaded module
    from videojepa.evaluation.datasets import ClipSpec, open_dataset
    from videojepa.data.transforms import normalize

    ds = open_dataset("synthetic:test:14", ClipSpec(4, (16, 16), 4, None, 2, 2))
    with torch.no_grad():
        probs = clf.forward_views(normalize(ds[0]["clip"])[None], 2, 2).softmax(-1).mean(1)[0]
    assert rec["top"][0]["class"] == res["classes"][int(probs.argmax())]
    assert rec["top"][0]["prob"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_hf_classifier_round_trip(exported, tmp_path):
    transformers = pytest.importorskip("transformers")
    assert main(["convert", str(exported / "export"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    hf = transformers.VJEPA2ForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    ours = videojepa.load(exported / "export")
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        a = ours(x)
        b = hf(pixel_values_videos=x.transpose(1, 2)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert hf.config.id2label[0] == "move_right"


def _frame_folder(path, seed):
    from PIL import Image

    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path / f"img_{i}.png")
    return path


def test_unseen_label_and_unreadable_test_file_are_named(tmp_path, capsys):
    vids = [_frame_folder(tmp_path / f"v{i}", i) for i in range(4)]
    (tmp_path / "train.csv").write_text("".join(f"{v} {i % 2}\n" for i, v in enumerate(vids)))
    (tmp_path / "val.csv").write_text(f"{vids[0]} 0\n{vids[1]} 7\n")
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video\n" * 20)
    (tmp_path / "test.csv").write_text(f"{vids[0]} 0\n{bad} 1\n")
    common = ["finetune", "--train", str(tmp_path / "train.csv"), "--frames", "4", "--crop", "16", "--steps", "1",
              "--no-progress", "--frame-step", "1", *TINY]
    assert main(common + ["--val", str(tmp_path / "val.csv"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "label '7'" in err and str(vids[1]) in err
    assert main(common + ["--test", str(tmp_path / "test.csv"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert main(common + ["--test", str(tmp_path / "test.csv"), "--out", str(tmp_path / "c"), "--on-error", "report"]) == 0
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert [s["path"] for s in res["test"]["skipped"]] == [str(bad)]


def test_unknown_config_key_is_named():
    from videojepa.config import ConfigError

    with pytest.raises(ConfigError, match="optim.*layer_dacay"):
        load_finetune_config(None, ["data.train=synthetic:train", "optim.layer_dacay=0.7"])


def test_training_needs_labels(tmp_path):
    vids = [_frame_folder(tmp_path / f"v{i}", i) for i in range(2)]
    (tmp_path / "train.csv").write_text("".join(f"{v}\n" for v in vids))
    with pytest.raises(DataError, match="needs a label"):
        Finetuner(_cfg(f"data.train={tmp_path / 'train.csv'}", "data.val=null"), tmp_path / "r", progress=False)


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_double_batch(tmp_path, launch):
    """torchrun + gloo: 2 ranks of batch 2 train exactly as 1 process of batch 4 (frozen stage, then end to end)."""
    import os
    import sys

    from videojepa.training.checkpoint import load_checkpoint

    def run(out, nproc, batch):
        launcher = ["-m", "videojepa"] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone",
                                                           f"--nproc-per-node={nproc}", "-m", "videojepa"]
        cmd = [sys.executable, *launcher, "finetune", "--train", "synthetic:train:140", "--steps", "3",
               "--freeze-steps", "1", "--out", str(out), "--no-progress", *TINY, f"data.batch_size={batch}",
               "model.drop_path=0.0", "train.checkpoint_every=3"]
        r = launch(cmd, 300, {**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        sd = load_checkpoint(out / "checkpoints" / "step_00000003.pt")
        return {f"{part}.{k}": v for part in ("encoder", "head") for k, v in sd[part].items()}

    a, b = run(tmp_path / "one", 1, 4), run(tmp_path / "two", 2, 2)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


def test_probe_init_starts_from_the_best_probe(tmp_path):
    """head.init=probe: the head starts as the best probe of the grid on frozen features (LP-FT); evaluating the
    model before any step reproduces the probe's validation top-1."""
    cfg = _cfg("data.train=synthetic:train:140", "data.val=synthetic:val:56", "train.steps=1", "head.init=probe",
               "head.probe_epochs=3", "head.probe_lrs=[3e-3]", "head.probe_weight_decays=[0.1]")
    ft = Finetuner(cfg, tmp_path, progress=False)
    assert ft.probe_init["selected_on"] == "val" and ft.probe_init["lr"] == 3e-3
    n = 56
    assert abs(ft.evaluate(ft.val_set())["top1"] - ft.probe_init["val_top1"]) <= 1.0 / n + 1e-6
    ft.fit()
    assert json.loads(json.dumps(ft.finish()))["probe_init"]["val_top1"] == ft.probe_init["val_top1"]


def test_published_init_offline_names_url_and_cache_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDEOJEPA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOJEPA_OFFLINE", "1")
    rc = main(["finetune", "--train", "synthetic:train:28", "--init", "vjepa2-vitl", "--out", str(tmp_path / "r"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "https://dl.fbaipublicfiles.com/vjepa2/vitl.pt" in err and str(tmp_path / "cache" / "vjepa2-vitl") in err
