from pathlib import Path

import pytest
import yaml

from videojepa.config import ConfigError, PretrainConfig, apply_overrides, list_presets, load_config
from videojepa.training.schedules import lr_at

ASSETS = Path(__file__).parent / "assets"


def test_presets_resolve_and_validate():
    names = list_presets()
    assert "cpu_demo" in names and "cpu_test" in names
    for n in names:
        cfg, _ = load_config(n)
        cfg.encoder_config()
        cfg.predictor_config()


def test_cpu_frozen_eval_is_cpu_demo_with_its_two_changes():
    # the preset's comment and bench/RESULTS_data_efficiency.md describe it as exactly these two overrides
    a, _ = load_config("cpu_frozen_eval")
    b, _ = load_config("cpu_demo", ["model.pos_embed=sincos", "optim.lr=3e-4"])
    assert a.encoder_config() == b.encoder_config() and a.predictor_config() == b.predictor_config()
    da, db = a.to_dict(), b.to_dict()
    da.pop("model"), db.pop("model")
    assert da == db


def test_base_key_merges_a_yaml_over_another(tmp_path):
    (tmp_path / "mine.yaml").write_text("base: cpu_test\noptim:\n  lr: 2.0e-4\ndata:\n  batch_size: 3\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("base: ../mine.yaml\ntrain:\n  max_steps: 7\n")
    cfg, _ = load_config(tmp_path / "sub" / "child.yaml")  # a relative base path is relative to the file
    want, _ = load_config("cpu_test", ["optim.lr=2e-4", "data.batch_size=3", "train.max_steps=7"])
    assert cfg == want
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("base: [cpu_test]\n")
    with pytest.raises(ConfigError, match="base must be"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "nobase.yaml").write_text("base: no_such_preset\n")
    with pytest.raises(ConfigError, match="no_such_preset"):
        load_config(tmp_path / "nobase.yaml")


def test_defaults_to_cpu_demo():
    cfg, _ = load_config(None)
    assert cfg == load_config("cpu_demo")[0]


@pytest.mark.parametrize("override,needle", [
    ("optim.lrr=1", "optim: .*lrr|lrr"),
    ("trian.max_steps=1", "trian"),
    ("model.embed_dimm=3", "embed_dimm"),
    ("predictor.deph=3", "deph"),
    ("mask.configs=[{type: multiblock, num_block: 3}]", "num_block"),
    ("train.max_steps=ten", r"train\.max_steps.*integer"),
    ("optim.lr_schedule=cosin", "lr_schedule"),
    ("model.name=vit_lage", "vit_lage"),
    ("data.batch_size=0", "batch_size"),
])
def test_unknown_or_bad_keys_are_named(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config("cpu_test", [override])


def test_overrides_parse_yaml_values():
    cfg, _ = load_config("cpu_test", ["optim.lr=3e-4", "optim.ema=[0.9, 0.99]", "data.crop_size=[16, 24]"])
    assert cfg.optim.lr == 3e-4 and cfg.optim.ema == (0.9, 0.99) and cfg.data.crop_size == (16, 24)
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["optim.lr"])


def test_round_trip_through_dict_and_yaml():
    cfg, _ = load_config("cpu_demo")
    again = PretrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_missing_file_and_preset_errors():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/x.yaml")
    with pytest.raises(ConfigError, match="unknown config preset 'nope'"):
        load_config("nope")


def test_official_vjepa1_yaml_loads_unchanged():
    cfg, notes = load_config(ASSETS / "official_vjepa1_vitl16.yaml")
    e, p = cfg.encoder_config(), cfg.predictor_config()
    assert (e.embed_dim, e.depth, e.num_heads, e.pos_embed, e.uniform_power, e.img_size, e.num_frames) == \
        (1024, 24, 16, "sincos", True, (224, 224), 16)
    assert not e.init_rescale  # V-JEPA 1 re-initialised away the depth scaling
    assert (p.embed_dim, p.depth, p.num_heads, p.num_mask_tokens, p.sort_by_position) == (384, 12, 16, 2, False)
    assert cfg.train.max_steps == 90000 and cfg.optim.warmup_steps == 12000 and cfg.optim.schedule_steps == 112500
    assert cfg.optim.clip_grad == 10.0 and cfg.optim.clip_grad_after_warmup
    assert cfg.mask.equalize == "prefix" and len(cfg.mask.configs) == 2
    assert cfg.data.frame_step == 4 and cfg.train.seed == 234
    assert 7.0e-5 < lr_at(cfg.train.max_steps - 1, cfg.optim, cfg.train.max_steps) < 8.0e-5
    assert any("ignored" in n and "nodes" in n and "logging.folder" in n for n in notes)


def test_official_vjepa2_yaml_loads_unchanged():
    cfg, notes = load_config(ASSETS / "official_vjepa2_vitl16_256px_16f.yaml")
    e, p = cfg.encoder_config(), cfg.predictor_config()
    assert (e.pos_embed, e.img_size, e.num_frames, e.activation_checkpointing, e.init_rescale) == ("rope", (256, 256), 16, True, True)
    assert (p.num_heads, p.sort_by_position) == (12, True)
    assert cfg.optim.ema == (0.99925, 0.99925) and cfg.optim.clip_grad is None
    assert cfg.data.fps == 4 and cfg.data.datasets_weights == [0.335, 0.1, 0.565]
    # constant lr after warmup (final_lr == lr)
    assert lr_at(50_000, cfg.optim, cfg.train.max_steps) == pytest.approx(5.25e-4)
    assert any("mem_per_gpu" in n for n in notes)


def test_official_yaml_unknown_key_is_named(tmp_path):
    d = yaml.safe_load((ASSETS / "official_vjepa1_vitl16.yaml").read_text())
    d["optimization"]["warmpu"] = 3
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match=r"optimization\.warmpu"):
        load_config(f)
