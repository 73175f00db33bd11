"""The params schema: the shipped profiles validate; mistakes get errors a person can act on."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sightline import config, models, registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "wikichurches"])
def test_shipped_profiles_validate(name):
    params = config.load_params(ROOT / "params" / f"{name}.yaml", base=ROOT)
    assert params.profile == name
    assert params.dataset.root.is_absolute()
    assert {models.REGISTRY[m.key].study for m in params.models} == {"wikichurches"}
    assert len(params.models) == 7


def _write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


BASE = """
profile: t
dataset: {kind: synthetic, root: data/x}
models: [{key: dinov2, weights: random, size: tiny}]
"""


def test_defaults_and_relative_paths(tmp_path):
    params = config.load_params(_write(tmp_path, BASE), base=tmp_path)
    assert params.dataset.root == tmp_path / "data" / "x"
    assert params.extraction.cache_dir == tmp_path / "cache"
    assert params.metrics.percentiles == (50, 60, 70, 75, 80, 85, 90, 95)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"metrics": {"percentlies": [90]}},
         "unknown key 'metrics.percentlies'. Did you mean 'percentiles'?"),
        ({"modles": []}, "unknown key 'modles'. Did you mean 'models'?"),
        ({"models": [{"key": "clip", "weights": "randm"}]}, "Did you mean 'random'?"),
        ({"dataset": {"kind": "synthetic", "n_anotated": 3}}, "unknown key 'dataset.n_anotated'"),
        ({"dataset": {"kind": "wikichurch", "root": "x"}}, "dataset"),
        ({"dataset": {"kind": "wikichurches"}}, "missing key 'dataset.root'"),
        ({"metrics": {"percentiles": [50, 100]}}, "'metrics.percentiles.1': Input should be less than 100"),
        ({"extraction": {"device": "gpu"}}, "'extraction.device' is 'gpu'"),
        ({"metrics": {"baselines": ["sobol"]}}, "Did you mean 'sobel'?"),
        ({"metrics": {"frame": "crop"}}, "'metrics.frame' is 'crop'; allowed: 'model'"),
        ({"report": {"split_by_correct": "maybe"}}, "'report.split_by_correct'"),
        ({"report": {"split_by_corect": True}}, "Did you mean 'split_by_correct'?"),
        ({"stats": {"sesoi": {"ioo": 0.1}}},
         "'stats.sesoi': 'ioo' is not a metric with a margin; allowed: iou, coverage, mse, kl"),
        ({"stats": {"sesoi": {"kl": 0}}}, "'stats.sesoi.kl': Input should be greater than 0"),
        ({"photos": {"methods": ["gradcm"]}},
         "'photos.methods.0' is 'gradcm'; allowed: 'gradcam' or 'xrai'. Did you mean 'gradcam'?"),
        ({"photos": {"sanity": {"methods": ["cls"]}}}, "'photos.sanity.methods.0' is 'cls'"),
        ({"sanity": {"models": [{"key": "dinov2", "variant": "frozen", "x": 1}]}},
         "unknown key 'sanity.models.0.x'. Allowed here: key, variant"),
        ({"sanity": {"models": "al"}}, "'sanity.models' is 'al'; allowed: 'all'. Did you mean 'all'?"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(tmp_path, patch, expected):
    raw = {**yaml.safe_load(BASE), **patch}
    path = _write(tmp_path, yaml.safe_dump(raw))
    with pytest.raises(config.ParamsError) as error:
        config.load_params(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)
    assert "literal[" not in str(error.value) and "tuple[" not in str(error.value)  # no union tags


def test_margins_default_to_the_metric_registrys_and_take_overrides(tmp_path):
    raw = {**yaml.safe_load(BASE), "stats": {"sesoi": {"kl": 0.2}}}
    sesoi = config.load_params(_write(tmp_path, yaml.safe_dump(raw)), base=tmp_path).stats.sesoi
    assert sesoi == {"iou": 0.01, "coverage": 0.01, "mse": 0.01, "kl": 0.2, "emd": 0.01}
    with registry.METRICS.registered(registry.Metric("peak", "peak", True, False, len, sesoi=0.3)):
        assert config.load_params(_write(tmp_path, BASE), base=tmp_path).stats.sesoi["peak"] == 0.3


def test_missing_file_lists_profiles(tmp_path):
    (tmp_path / "demo.yaml").write_text(BASE)
    with pytest.raises(config.ParamsError, match="no such params file.*demo.yaml"):
        config.load_params(tmp_path / "dmeo.yaml")


def test_not_yaml_or_not_a_mapping(tmp_path):
    with pytest.raises(config.ParamsError, match="not valid YAML"):
        config.load_params(_write(tmp_path, "a: [1, 2"))
    with pytest.raises(config.ParamsError, match="mapping"):
        config.load_params(_write(tmp_path, "- 1\n- 2\n"))


def test_build_reports_params_errors_without_traceback_and_exit_2(tmp_path):
    raw = {**yaml.safe_load(BASE), "metrics": {"resolutoin": 3}}
    path = _write(tmp_path, yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "--params", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Did you mean 'resolution'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_split_by_correct_is_off_unless_asked_and_on_in_the_shipped_profiles(tmp_path):
    assert config.load_params(_write(tmp_path, BASE), base=tmp_path).report.split_by_correct is False
    for name in ("demo", "wikichurches", "shared_interest"):
        params = config.load_params(ROOT / "params" / f"{name}.yaml", base=ROOT)
        assert params.report.split_by_correct is True


def test_sanity_lists_a_spec_model_by_its_key(tmp_path):
    raw = {**yaml.safe_load(BASE), "models": [
        {"key": "dinov2", "weights": "random", "size": "tiny"},
        {"key": "mynet", "source": "timm", "name": "resnet18", "weights": "random"}],
        "sanity": {"models": [{"key": "mynet"}]}}
    params = config.load_params(_write(tmp_path, yaml.safe_dump(raw)), base=tmp_path)
    assert [m.key for m in params.sanity.models] == ["mynet"]
