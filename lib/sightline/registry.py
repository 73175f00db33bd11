"""The two registries every consumer reads: saliency methods and metrics, by name. Adding
one is a `register` call and its function (docs/extending.md); functions are named
``"module:function"`` and imported on first use, so this module imports no model library."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, get_args

# What a model's maps are read from (`sightline.models.Layout.readout`; docs/extending.md)
Readout = Literal["cls", "probe", "tokens", "cnn"]


class _Entry:
    def __call__(self, *args, **kwargs):
        """Call the entry's function (a callable, or the one a ``"module:function"`` names)."""
        function = self.function
        if isinstance(function, str):
            module, name = function.split(":")
            function = getattr(importlib.import_module(module), name)
        return function(*args, **kwargs)


@dataclass(frozen=True)
class Method(_Entry):
    """A saliency method: what it needs of a model and how extraction runs it (the fields and
    each ``runs``' function signature: docs/extending.md)."""

    name: str
    label: str
    readouts: frozenset[str]
    runs: Literal["attention", "attention_gradients", "own"]
    function: str | Callable
    per_head: bool = False
    readout_heads: bool = False
    explains_class: bool = False
    classifier_only: bool = False
    cost: Literal["forward", "backward", "many"] = "forward"
    help: str = ""


@dataclass(frozen=True)
class Metric(_Entry):
    """A score of a map against an annotation (the fields and the function's signature:
    docs/extending.md; ``summary_rank``: its row's place in Q1's summary table, lower first)."""

    name: str
    label: str
    higher_is_better: bool
    thresholded: bool
    function: str | Callable
    sesoi: float | None = None
    target: Literal["mask", "soft"] = "mask"
    swept: bool = False
    summary_rank: int = 100
    help: str = ""


Entry = TypeVar("Entry", Method, Metric)


class Registry(Generic[Entry]):
    """Entries by name, in registration order."""

    def __init__(self, kind: str, entries: list[Entry]):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: Entry) -> Entry:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    @contextmanager
    def registered(self, entry: Entry) -> Iterator[Entry]:
        """``entry`` registered for the duration of a ``with`` block (tests, experiments)."""
        self.register(entry)
        try:
            yield entry
        finally:
            del self._entries[entry.name]

    def __getitem__(self, name: str) -> Entry:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def names(self, **where) -> tuple[str, ...]:
        """Names of the entries whose fields equal ``where`` (all entries without it)."""
        return tuple(e.name for e in self if all(getattr(e, k) == v for k, v in where.items()))


_S = "sightline.saliency."
METHODS: Registry[Method] = Registry("method", [
    Method("cls", "CLS attention", frozenset({"cls"}), "attention", _S + "attention:cls_maps",
           per_head=True, readout_heads=True,
           help="the CLS token's attention row over patch tokens, per layer and head"),
    Method("rollout", "attention rollout", frozenset({"cls"}), "attention", _S + "attention:rollout_maps",
           help="attention rollout (Abnar & Zuidema 2020) through layers 0..l, CLS row"),
    Method("probe", "pooling-probe attention", frozenset({"probe"}), "attention",
           _S + "attention:probe_maps", per_head=True, readout_heads=True,
           help="the pooling head's probe attention over patches (SigLIP family)"),
    Method("mean_received", "attention received", frozenset({"probe", "tokens"}), "attention",
           _S + "attention:mean_received_maps", per_head=True,
           help="the attention each patch receives, averaged over query rows"),
    Method("chefer", "Chefer relevance", frozenset({"cls", "probe"}), "attention_gradients",
           _S + "attention:chefer_maps", explains_class=True, cost="backward",
           help="gradient-weighted attention relevance (Chefer et al. 2021) of a class logit"),
    Method("attnlrp", "AttnLRP", frozenset({"cls", "probe", "tokens"}), "own",
           "sightline.attribution:attnlrp_maps", explains_class=True, cost="backward",
           help="AttnLRP (Achtibat et al. 2024): LRP relevance of a class logit through "
                "attention and LayerNorm, entering each block"),
    Method("legrad", "LeGrad", frozenset({"cls", "probe", "tokens"}), "own",
           "sightline.attribution:legrad_maps", per_head=True, readout_heads=True,
           explains_class=True, cost="backward",
           help="LeGrad (Bousselham et al. 2024): gradient of the logit read at each block "
                "with respect to its attention, layers l..L-1"),
    Method("gradcam", "Grad-CAM", frozenset(get_args(Readout)), "own", _S + "gradcam:gradcam_maps",
           explains_class=True, cost="backward",
           help="pytorch-grad-cam's GradCAM of a class logit at the layer's grid"),
    Method("xrai", "XRAI", frozenset({"cnn"}), "own", _S + "xrai:xrai_maps", explains_class=True,
           classifier_only=True, cost="many",
           help="XRAI (Kapishnikov et al. 2019) region ranking from integrated gradients"),
])


def applicable_methods(readout: Readout, classifier: bool) -> tuple[str, ...]:
    """The methods a model of this readout supports, in registry order; ``classifier``:
    the model has its own classifier (else a class logit comes from a style head)."""
    return tuple(m.name for m in METHODS
                 if readout in m.readouts and (classifier or not m.classifier_only))


_M = "sightline.metrics:"
METRICS: Registry[Metric] = Registry("metric", [
    Metric("iou", "IoU", True, True, _M + "iou", sesoi=0.01, swept=True, summary_rank=0,
           help="IoU of the top-k pixels with the mask"),
    Metric("gtc", "GTC", True, True, _M + "gtc", swept=True, summary_rank=2,
           help="ground-truth coverage: |top-k ∩ mask| / |mask|"),
    Metric("sc", "SC", True, True, _M + "sc", swept=True, summary_rank=3,
           help="saliency coverage: |top-k ∩ mask| / |top-k|"),
    Metric("iou_rel", "relative IoU", True, True, _M + "iou_rel", swept=True, summary_rank=1,
           help="IoU over the best IoU any map reaches for the mask's area"),
    Metric("coverage", "coverage", True, False, _M + "coverage", sesoi=0.01, swept=True, summary_rank=5,
           help="attention mass inside the mask / total mass (the energy pointing game)"),
    Metric("pointing_game", "pointing game", True, False, _M + "pointing_game", swept=True, summary_rank=8,
           help="1 when the map's maximum lies inside the mask"),
    Metric("auc", "AUC", True, False, _M + "auc", swept=True, summary_rank=6,
           help="ROC AUC of the map's values as a classifier of mask pixels (0.5: chance)"),
    Metric("nss", "NSS", True, False, _M + "nss", swept=True, summary_rank=7,
           help="mean over the mask of the z-scored map (0: chance)"),
    Metric("mse", "MSE", False, False, _M + "mse", sesoi=0.01, target="soft", summary_rank=9,
           help="mean squared error of the min-max scaled map and the soft box target"),
    Metric("kl", "KL", False, False, _M + "kl", sesoi=0.05, target="soft", summary_rank=10,
           help="KL(soft box target ‖ map) in nats"),
    Metric("emd", "EMD", False, False, _M + "emd", sesoi=0.01, target="soft", summary_rank=11,
           help="earth mover's distance to the soft box target, in image sides"),
])


def sesoi_defaults() -> dict[str, float]:
    """Each Q2 metric's default smallest effect size of interest (``stats.sesoi``)."""
    return {m.name: m.sesoi for m in METRICS if m.sesoi is not None}
