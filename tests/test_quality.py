"""A model trained with the default swiss-roll configuration meets its quality threshold."""

import json

import pytest

from ddpm.config import make_config
from ddpm.runs import train


@pytest.mark.slow
def test_swissroll_default_configuration_reaches_the_data_floor(tmp_path):
    cfg = make_config(data="swissroll")
    train(cfg, tmp_path / "run", progress=False)
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["n"] == 2000
    assert report["sliced_wasserstein"]["ratio"] <= 1.5, report
    assert report["wasserstein2"]["ratio"] <= 1.6, report
