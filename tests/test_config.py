import pytest

from ddpm.config import (PRESETS, Config, config_from_dict, config_to_dict, load_config, make_config,
                         parse_override, save_config)
from ddpm.errors import ConfigError
from ddpm.validate import validate


def test_data_name_picks_its_preset_and_overrides_apply():
    cfg = make_config(data="mnist", overrides={"train.lr": 3e-4, "seed": 7})
    assert cfg.preset == "mnist" and cfg.model.kind == "unet" and cfg.train.lr == 3e-4 and cfg.seed == 7
    assert make_config(data="moons").data.name == "moons"
    assert make_config(data="/some/folder").preset == "images"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_round_trips_through_toml(tmp_path, preset):
    cfg = make_config(preset)
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


def test_override_values_are_typed():
    assert parse_override("train.lr=2e-4") == ("train.lr", 2e-4)
    assert parse_override("model.channel_mults=[1,2,2]") == ("model.channel_mults", [1, 2, 2])
    assert parse_override("data.name=swissroll") == ("data.name", "swissroll")
    assert parse_override("sample.clip_denoised=true") == ("sample.clip_denoised", True)
    cfg = make_config("swissroll", overrides=dict([parse_override("train.minutes=1"), parse_override("diffusion.beta_end=none")]))
    assert cfg.train.minutes == 1.0 and isinstance(cfg.train.minutes, float) and cfg.diffusion.beta_end is None


@pytest.mark.parametrize("override,match", [
    ("train.lrr=1", "unknown option 'train.lrr'"),
    ("training.lr=1", "unknown option"),
    ("train.steps=abc", "must be of type int"),
    ("train.steps=1.5", "must be of type int"),
    ("model.channel_mults=3", "must be a list"),
    ("lr", "section.field=value"),
])
def test_bad_overrides_name_the_problem(override, match):
    with pytest.raises(ConfigError, match=match):
        make_config("swissroll", overrides=dict([parse_override(override)]))


def test_unknown_preset_and_section():
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("imagenet")
    with pytest.raises(ConfigError, match="unknown configuration section"):
        config_from_dict({"optim": {}})


def test_none_values_are_written_and_restored():
    cfg = Config()
    tree = config_to_dict(cfg)
    assert tree["train"]["minutes"] == "none"  # TOML has no null; absent would mean "the default"
    assert config_from_dict(tree) == cfg


def test_a_sigma_range_is_checked_against_the_spacing_and_the_chain():
    ok = make_config(data="swissroll", overrides={"sample.sampler": "dpm++", "sample.spacing": "logsnr",
                                                  "sample.sigma_min": 0.05, "sample.sigma_max": 20.0})
    validate(ok)
    assert (ok.sample.sigma_min, ok.sample.sigma_max) == (0.05, 20.0)
    for overrides, match in (({"sample.sigma_min": 0.05}, "karras or logsnr"),  # ancestral: the chain's steps
                             ({"sample.sampler": "dpm++", "sample.sigma_max": 1e6}, "within the chain's"),
                             ({"sample.sampler": "dpm++", "sample.sigma_min": 2.0, "sample.sigma_max": 1.0}, "rise"),
                             ({"sample.sampler": "dpm++", "sample.sigma_min": -1.0}, "positive")):
        with pytest.raises(ConfigError, match=match):
            validate(make_config(data="swissroll", overrides=overrides))
