"""Fine-tuning: the split never leaks, the strategies touch only what they should, runs
resume to the same weights, and the linear probe leaves every map as it was."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import f1_score

from sightline import data, extract, finetune, models, saliency, synthetic
from sightline.config import Finetune, ModelChoice
from sightline.finetune import training

TINY = {"weights": "random", "size": "tiny"}
RECIPE = Finetune(epochs=2, batch_size=8, head_lr=1e-2, backbone_lr_full=1e-3,
                  backbone_lr_lora=1e-2, val_fraction=0.25, device="cpu")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = synthetic.make_synthetic(tmp_path_factory.mktemp("ds"), n_annotated=6, n_pool=40,
                                    seed=4)
    wc = data.load_wikichurches(root)
    return wc, data.dataset_fingerprint(root)


@pytest.fixture(scope="module")
def split(pool):
    wc, dataset_id = pool
    return finetune.make_split(wc, dataset_id, 0, RECIPE.val_fraction)


@pytest.fixture(scope="module")
def trained(pool, split, tmp_path_factory):
    """One linear probe and one LoRA run of tiny DINOv2, and a full run of tiny ResNet-50."""
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for key, strategy in (("dinov2", "linear_probe"), ("dinov2", "lora"), ("resnet50", "full")):
        runs[(key, strategy)] = finetune.train_run(ModelChoice(key=key, **TINY), strategy, 0,
                                                   split, RECIPE, out, progress=False)
    return out, runs


def test_split_is_stratified_church_disjoint_and_recorded(pool, split, tmp_path):
    wc, _ = pool
    train_ids = [i for i, *_ in split.train]
    val_ids = [i for i, *_ in split.val]
    assert not {data.church_of(i) for i in train_ids} & {data.church_of(i) for i in val_ids}
    eligible = set(wc.pool.loc[wc.pool["split"].isin(["train", "val"]), "image_id"])
    assert set(train_ids) | set(val_ids) == eligible
    for style in range(4):
        n_style = sum(label == style for *_, label in split.train + split.val)
        n_val = sum(label == style for *_, label in split.val)
        assert n_val >= 1 and n_val <= round(0.25 * n_style) + 3  # churches hold up to 3 images
    again = finetune.make_split(wc, split.dataset_id, 0, 0.25)
    assert again == split and again.id == split.id
    assert finetune.make_split(wc, split.dataset_id, 1, 0.25).id != split.id
    path = split.save(tmp_path)
    record = json.loads(path.read_text())
    assert record["id"] == split.id and record["seed"] == 0
    assert [tuple(item) for item in record["val"]] == list(split.val)


def test_a_copied_dataset_keeps_its_split_id(pool, split, tmp_path):
    """The id names the images and labels, not where they lie: a project copied elsewhere (with
    its files' mtimes, as `cp -a` / rsync keep them) reuses its runs instead of retraining."""
    wc, _ = pool
    moved = shutil.copytree(wc.root, tmp_path / "elsewhere")
    copy = finetune.make_split(data.load_wikichurches(moved), data.dataset_fingerprint(moved), 0,
                               RECIPE.val_fraction)
    assert copy.train != split.train  # other paths
    assert copy.id == split.id
    relabelled = dataclasses.replace(split, val=((*split.val[0][:2], split.val[0][2] + 1),
                                                 *split.val[1:]))
    assert relabelled.id != split.id


def test_no_annotated_image_or_church_enters_the_split(pool, split):
    wc, _ = pool
    annotated_churches = {data.church_of(s.image_id) for s in wc.samples}
    for image_id, *_ in split.train + split.val:
        assert data.church_of(image_id) not in annotated_churches
    leaked = data.church_of(wc.samples[0].image_id) + "_wd7.jpg"
    with pytest.raises(data.DataError, match="annotated"):
        finetune.check_no_leak(["Q1_wd0.jpg", leaked], [s.image_id for s in wc.samples])
    bad_pool = wc.pool.copy()
    bad_pool.loc[len(bad_pool)] = [wc.samples[0].image_id, data.church_of(wc.samples[0].image_id),
                                   wc.samples[0].path, "Gothic", "train"]
    with pytest.raises(data.DataError, match="annotated"):
        finetune.make_split(data.Dataset(wc.root, wc.samples, wc.features, bad_pool),
                            "x", 0, 0.25)


def test_manifest_records_the_run(trained, split):
    _, runs = trained
    manifest = runs[("dinov2", "lora")]
    assert manifest["split"]["id"] == split.id
    assert manifest["params"]["lora_rank"] == 8 and manifest["params"]["lora_targets"] == [
        "q_proj", "v_proj"]
    assert 1 <= manifest["best_epoch"] <= 2 and len(manifest["history"]) == 2
    best = manifest["history"][manifest["best_epoch"] - 1]
    assert manifest["val_accuracy"] == best["val_accuracy"]
    assert max(h["val_accuracy"] for h in manifest["history"]) == manifest["val_accuracy"]
    assert set(manifest["versions"]) >= {"torch", "transformers", "peft"}
    assert manifest["checkpoint_hash"] == finetune.checkpoint_hash(
        __import__("pathlib").Path(manifest["dir"]))


def test_finished_runs_are_reused_not_retrained(trained, split, monkeypatch):
    out, runs = trained
    monkeypatch.setattr(training.checkpoints, "backbone", lambda *a: pytest.fail("retrained"))
    again = finetune.train_run(ModelChoice(key="dinov2", **TINY), "lora", 0, split, RECIPE, out)
    assert again == runs[("dinov2", "lora")]


def test_linear_probe_leaves_every_map_bit_identical(pool, trained, tmp_path):
    wc, dataset_id = pool
    _, runs = trained
    choice = ModelChoice(key="dinov2", **TINY)
    probe = runs[("dinov2", "linear_probe")]
    jobs = finetune.map_jobs([choice], [probe], cache_dir=tmp_path, dataset_id=dataset_id, seed=0)
    extract.extract_models(wc.samples, list(jobs.values()), batch_size=4, device="cpu",
                           progress=False)
    stores = {variant: job.store for (_, variant), job in jobs.items()}
    plain = extract.store_for(tmp_path, dataset_id, "plain", "frozen")
    extract.extract_model(wc.samples, choice, plain, batch_size=3, device="cpu", progress=False)
    frozen, probed = stores["frozen"], stores["linear_probe.s0"]
    assert probed.path == frozen.path  # one store, extracted once: a probe changes no map
    attention = [k for k in plain.keys()]
    assert attention and ("gradcam", 3) not in attention  # no head: no Grad-CAM
    for method, layer in attention:
        ids, reference = plain.read(method, layer)
        for store in (frozen, probed):
            assert np.array_equal(store.read(method, layer, ids)[1], reference)
    # the frozen variant's Grad-CAM is the linear probe's (same backbone, same head)
    assert ("gradcam", 3) in frozen.keys()
    ids, cam = frozen.read("gradcam", 3)
    assert np.array_equal(probed.read("gradcam", 3, ids)[1], cam) and cam.max() > 0


def test_lora_changes_only_the_adapted_projections_and_the_head(trained):
    _, runs = trained
    manifest = runs[("dinov2", "lora")]
    adapter = load_file(f"{manifest['dir']}/adapter/adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)
    base = models.load_model("dinov2").module.state_dict()
    tuned = finetune.load_run(manifest).module.state_dict()
    assert tuned.keys() == base.keys()
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    head = load_file(f"{manifest['dir']}/head.safetensors")
    assert set(head) == {"weight", "bias"}


def test_full_run_trains_every_weight_and_reloads_them(trained):
    _, runs = trained
    manifest = runs[("resnet50", "full")]
    assert manifest["trainable_params"] == manifest["total_params"]
    base = models.load_model("resnet50").module.state_dict()
    tuned = finetune.load_run(manifest).module.state_dict()
    weights = [k for k in tuned if k.endswith("conv1.weight")]
    assert weights and all(not torch.equal(base[k], tuned[k]) for k in weights)


def test_a_killed_run_resumes_to_the_same_weights(split, tmp_path, monkeypatch):
    choice = ModelChoice(key="resnet50", **TINY)
    recipe = RECIPE.model_copy(update={"epochs": 3})
    whole = finetune.train_run(choice, "full", 0, split, recipe, tmp_path / "a", progress=False)

    save = training._save_state

    def save_then_die(path, state):
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune.train_run(choice, "full", 0, split, recipe, tmp_path / "b", progress=False)
    monkeypatch.setattr(training, "_save_state", save)
    folder = finetune.run_dir(tmp_path / "b", finetune.Run(choice, "full", 0), split, recipe, 0)
    assert (folder / "state.pt").exists() and not (folder / "manifest.json").exists()
    resumed = finetune.train_run(choice, "full", 0, split, recipe, tmp_path / "b", progress=False)
    assert resumed["checkpoint_hash"] == whole["checkpoint_hash"]
    def learned(history):
        return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]

    assert learned(resumed["history"]) == learned(whole["history"])


def test_macro_f1_and_class_weights_match_their_definitions():
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    predicted[predicted == 3] = 2  # a class never predicted
    assert training.macro_f1(truth, predicted, 4) == pytest.approx(
        f1_score(truth, predicted, average="macro", labels=range(4), zero_division=0))
    weights = training.class_weights([0, 0, 0, 1, 2, 3], 4)
    assert torch.allclose(weights, torch.tensor([0.5, 1.5, 1.5, 1.5]))
    with pytest.raises(finetune.FinetuneError, match="no training image"):
        training.class_weights([0, 1, 2], 4)


@pytest.mark.parametrize("key", [k for k, s in models.REGISTRY.items() if s.arch.lora])
def test_lora_targets_exist_in_the_model(key):
    module = models.load_model(key).module
    names = {name.rsplit(".", 1)[-1] for name, _ in module.named_modules()}
    assert set(models.REGISTRY[key].arch.lora.targets) <= names


def test_plan_checks_strategies_against_the_registry():
    choices = [ModelChoice(key="resnet50", **TINY), ModelChoice(key="clip", **TINY)]
    runs = finetune.plan(choices, Finetune(strategies={"clip": ("lora",)}, seeds=2), seed=5)
    assert [(r.choice.key, r.variant) for r in runs] == [("clip", "lora.s5"), ("clip", "lora.s6")]
    with pytest.raises(finetune.FinetuneError, match="no LoRA defaults"):
        finetune.plan(choices, Finetune(strategies={"resnet50": ("lora",)}), seed=0)


def test_gradcam_needs_a_style_head(pool):
    wc, _ = pool
    backbone = models.load_model("clip")
    pixels = backbone.preprocess([data.load_image(wc.samples[0].path)])
    assert not any(m == "gradcam" for m, _ in saliency.extract(backbone, pixels))
    with pytest.raises(ValueError, match="linear probe"):
        saliency.extract(backbone, pixels, ["gradcam"])


def test_held_out_accuracy_reads_the_pool_test_split_through_the_run(pool, split, trained):
    wc, _ = pool
    held_out = finetune.test_items(wc)
    test_ids = {i for i, *_ in held_out}
    assert test_ids == set(wc.pool.loc[wc.pool["split"] == "test", "image_id"])
    assert not test_ids & {i for i, *_ in (*split.train, *split.val)}
    _, runs = trained
    for manifest in runs.values():
        # on the validation items it reproduces the manifest's accuracy (the maps' frame
        # versus training's uint8 frame may flip a near-tie: at most one image)
        again = finetune.evaluate_run(manifest, split.val, batch_size=5)
        assert again["n"] == len(split.val)
        assert abs(again["accuracy"] - manifest["val_accuracy"]) <= 1 / len(split.val) + 1e-9
        result = finetune.evaluate_run(manifest, held_out)
        loaded = finetune.load_run(manifest)
        pixels = loaded.preprocess([data.load_image(path) for _, path, _ in held_out])
        with torch.no_grad():
            predicted = loaded.score(pixels).argmax(dim=1).numpy()
        truth = np.array([label for *_, label in held_out])
        assert result["accuracy"] == pytest.approx(np.mean(predicted == truth))
        assert result["macro_f1"] == pytest.approx(
            f1_score(truth, predicted, average="macro", labels=range(4), zero_division=0))


def test_evaluating_on_no_images_is_a_clear_error(trained):
    _, runs = trained
    with pytest.raises(finetune.FinetuneError, match="no images to evaluate"):
        finetune.evaluate_run(runs[("dinov2", "lora")], ())


def test_training_lines_go_to_the_console_never_into_a_saved_notebook(split, tmp_path, capsys):
    import nbformat

    from sightline import pipeline

    finetune.train_run(ModelChoice(key="dinov2", **TINY), "linear_probe", 0, split, RECIPE,
                       tmp_path, progress=True)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith(finetune.PROGRESS_PREFIX)]
    assert len(lines) == RECIPE.epochs and "epoch" not in out
    assert lines[-1].startswith(f"{finetune.PROGRESS_PREFIX}dinov2-tiny-random linear_probe.s0 "
                                f"epoch {RECIPE.epochs}/{RECIPE.epochs}: loss ")
    cell = nbformat.v4.new_code_cell("manifests = ft.train_all(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=err + "UserWarning: x\n")]
    saved = pipeline.reproducible(nbformat.v4.new_notebook(cells=[cell]), "q1")
    text = "".join(o.text for o in saved.cells[0].outputs)
    assert finetune.PROGRESS_PREFIX not in text and "UserWarning: x" in text


def test_batched_colour_jitter_equals_torchvision_per_image():
    """The training batch's jitter is torchvision's brightness, contrast, saturation
    adjustments (in that order), each image with its own factors."""
    from torchvision.transforms.v2 import functional as F

    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 17, 23, generator=g)
    b, c, s = (torch.rand(5, generator=g) * 1.6 + 0.2 for _ in range(3))
    got = training.color_jitter(images, b, c, s)
    for i in range(5):
        x = F.adjust_brightness(images[i], b[i].item())
        x = F.adjust_contrast(x, c[i].item())
        x = F.adjust_saturation(x, s[i].item())
        torch.testing.assert_close(got[i], x, atol=1e-6, rtol=0)
    assert not torch.allclose(got[0], images[0])


def test_training_runs_on_fast_attention_and_the_run_loads_back_eager(split, tmp_path, monkeypatch):
    """Training reads no attention weights, so it uses SDPA; maps need eager attention, so a
    loaded run has it again (and its attention maps are there)."""
    seen = []
    real = models.HFVision.for_training

    def recording(self, module):
        real(self, module)
        seen.append(module.config._attn_implementation)

    monkeypatch.setattr(models.HFVision, "for_training", recording)
    recipe = RECIPE.model_copy(update={"epochs": 1})
    manifest = finetune.train_run(ModelChoice(key="clip", **TINY), "full", 0, split, recipe,
                                  tmp_path, progress=False)
    assert seen == ["sdpa"]
    loaded = finetune.load_run(manifest)
    assert loaded.module.config._attn_implementation == "eager"
    size = loaded.spec.geometry.size
    maps = saliency.extract(loaded, torch.rand(1, 3, size, size), ["cls"])
    assert maps and all(np.isfinite(m).all() for m in maps.values())


def test_timm_vit_trains_fused_and_is_read_unfused():
    import timm

    arch = models.TimmViT()
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, embed_dim=32,
                            num_heads=2)
    arch.prepare(net)  # how every model is read: softmax weights exist
    assert not any(b.attn.fused_attn for b in net.blocks)
    arch.for_training(net)
    assert all(b.attn.fused_attn for b in net.blocks)


SAVE_ADAPTER = """
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from sightline.finetune import checkpoints


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.v_proj = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.q_proj(x) + self.v_proj(x)


torch.manual_seed(0)
folder = Path(sys.argv[1])
model = get_peft_model(Attention(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
model.save_pretrained(folder / checkpoints.ADAPTER_DIR)
print(checkpoints.checkpoint_hash(folder))
"""


def test_a_lora_runs_hash_is_the_same_under_any_hash_seed(tmp_path):
    """peft writes target_modules (a set) in hash-seed order: seeds 0 and 3 order
    {q_proj, v_proj} differently, the adapter weights are the same to the bit."""
    lib = Path(__file__).resolve().parents[1] / "lib"
    hashes, configs = [], []
    for seed in ("0", "3"):
        folder = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(lib)}
        out = subprocess.run([sys.executable, "-c", SAVE_ADAPTER, str(folder)], env=env,
                             capture_output=True, text=True, check=True)
        hashes.append(out.stdout.split()[-1])
        configs.append(json.loads((folder / "adapter" / "adapter_config.json").read_text()))
    assert configs[0]["target_modules"] != configs[1]["target_modules"]  # the planted order
    assert hashes[0] == hashes[1]


def test_code_version_covers_every_module_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "finetune"
    package.mkdir()
    for source in Path(finetune.__file__).parent.glob("*.py"):
        (package / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(finetune, "__file__", str(package / "__init__.py"))
    before = finetune.code_version()
    for name in ("training.py", "checkpoints.py"):
        with (package / name).open("a") as module:
            module.write("# a change\n")
        assert finetune.code_version() != before
        before = finetune.code_version()


def test_runs_train_longest_first_and_come_back_in_plan_order(split, monkeypatch):
    started = []

    def fake(choice, strategy, seed, *rest):
        started.append(strategy)
        return {"strategy": strategy, "seed": seed}

    monkeypatch.setattr(training, "_train_task", fake)
    choice = ModelChoice(key="clip", **TINY)
    plan = [finetune.Run(choice, s, seed) for seed in (0, 1)
            for s in ("linear_probe", "lora", "full")]
    manifests = training.train_all(plan, {0: split, 1: split}, RECIPE, model_seed=0)
    assert started == ["full", "full", "lora", "lora", "linear_probe", "linear_probe"]
    assert [(m["strategy"], m["seed"]) for m in manifests] == [(r.strategy, r.seed) for r in plan]


def test_a_lora_run_is_the_same_whatever_ran_before_it_in_the_process(trained, split, tmp_path):
    _, runs = trained
    torch.manual_seed(12345)  # another history of the global generator than the fixture's
    again = finetune.train_run(ModelChoice(key="dinov2", **TINY), "lora", 0, split, RECIPE,
                               tmp_path, progress=False)
    first = load_file(f"{runs[('dinov2', 'lora')]['dir']}/adapter/adapter_model.safetensors")
    second = load_file(f"{again['dir']}/adapter/adapter_model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
