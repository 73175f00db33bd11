"""Shared test set-up: never touch a network, keep torch small and deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_params():
    """``params/demo.yaml`` cut to a test's model list and size, as a dict to update.

    ``demo_params(keys, probes=...)`` keeps the demo's keys and sections; the models become
    the tiny random ``keys``, fine-tuning is cut to ``probes`` (model key -> strategies;
    default none: no training, so no Grad-CAM), one epoch, the randomisation test to the
    trained runs among its models, the Shared Interest section to one tiny model on
    four images, and the photos section to Grad-CAM on one composite (no darknet download),
    its randomisation test to Grad-CAM on two photos, the head and the whole network.
    """

    def make(keys, probes=None) -> dict:
        params = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
        params["models"] = [{"key": k, "weights": "random", "size": "tiny"} for k in keys]
        params["finetune"].update(strategies=dict(probes or {}), epochs=1, batch_size=8)
        params["sanity"]["models"] = [m for m in params["sanity"]["models"]
                                      if m["variant"] in (probes or {}).get(m["key"], ())]
        params["shared_interest"].update(
            models=[{"key": "resnet101", "weights": "random", "size": "tiny"}],
            xrai={"steps": 2, "batch_size": 4, "algorithm": "fast"}, gallery_size=1,
        )
        params["shared_interest"]["dataset"]["per_subject"] = 2
        params["photos"].update(  # the real photos at their cheapest; nothing fetched
            methods=["gradcam"], composites=params["photos"]["composites"][:1], rotate=False,
            fetch_darknet=False,
        )
        params["photos"]["sanity"].update(methods=["gradcam"], depths=[1], max_images=2)
        return params

    return make
