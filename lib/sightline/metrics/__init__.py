"""Scores of attention maps against expert masks: top-k overlap, mass, pointing, soft targets.

Conventions shared by every function here:

- A map is non-negative, larger = more attention. Maps are ranked as float32 (the dtype of
  upsampled maps), masks are boolean; both are ``(N, H, W)`` and paired 1:1 unless noted.
- **Top-k** at percentile ``p`` keeps exactly ``k = round(n * (100 - p) / 100)`` of the
  ``n = H * W`` pixels, rounding halves to even (``np.round``, the rule of Python's
  ``round``): the first ``k`` pixels of a stable sort by descending value, so among equal
  values the lower row-major index is kept. ``p`` lies in ``[0, 100)``.
- **NaN**, never inf and never a warning, where a score is undefined: every score of an
  empty mask (nothing to find) or of an all-zero map (nothing attended), SC of an empty
  top-k set (k = 0), AUC and NSS of a full mask (nothing outside to tell apart), NSS of a
  constant map (no spread to z-score by).
- ``auc`` and ``nss``: as docs/methods.md defines them (ties counted half; population std).

``sweep`` ranks each upsampled map once for all percentiles, targets and AUC; the 1:1
functions give identical set scores and AUC (tested against each other, a per-threshold
argsort and scikit-learn). Modules: `core`, `per_map`, `ranking`, `soft`, `binarised`.
"""

from .binarised import binarize_percentile, binarize_std, shared_interest_scores
from .core import ArrayLike, checked_maps, relative_iou, top_k_size
from .per_map import auc, coverage, gtc, iou, iou_rel, max_iou, nss, pointing_game, sc, shared_interest
from .ranking import sweep, upsample
from .soft import emd, kl, mse, soft_target

__all__ = ["ArrayLike", "auc", "binarize_percentile", "binarize_std", "checked_maps", "coverage",
           "emd", "gtc", "iou", "iou_rel", "kl", "max_iou", "mse", "nss",
           "pointing_game", "relative_iou", "sc", "shared_interest", "shared_interest_scores",
           "soft_target", "sweep", "top_k_size", "upsample"]
