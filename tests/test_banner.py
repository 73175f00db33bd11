"""The random-weights banner: shown exactly when a listed model has random weights."""

from sightline import plots
from sightline.config import ModelChoice


def test_banner_names_the_random_models_and_is_absent_for_real_weights():
    models = [{"key": "clip", "weights": "random", "size": "tiny"},
              {"key": "dinov2", "weights": "pretrained", "size": "base"}]
    html = plots.random_weights_banner(models).data
    assert html.startswith('<div class="sightline-banner" style="')
    assert "clip" in html and "dinov2" not in html
    assert "these numbers exercise the pipeline; they are not findings" in html
    assert plots.random_weights_banner([ModelChoice(key="resnet50")]) is None
    assert plots.random_weights_banner([{"key": "mae"}]) is None  # pretrained by default
    assert "mae" in plots.random_weights_banner([ModelChoice(key="mae", weights="random")]).data
