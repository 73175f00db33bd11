"""Q2 fine-tuning: linear probe, LoRA and full fine-tuning on the style-labelled pool.

A *run* is one (model choice, strategy, seed). `train_run` trains it as a pure function of
its arguments: it loads the data and the model itself, writes everything under a
content-keyed folder and returns the run's manifest, so a scheduler can run it in another
process or on another machine. A finished run is reused (its manifest exists); a killed
run resumes from its last completed epoch and ends with the same weights as an
uninterrupted one (each epoch's randomness is seeded by (seed, epoch)).

Strategies (the head is always a linear layer on the backbone's pooled embedding, the
one `LoadedModel.score` and Grad-CAM use):

- ``linear_probe``: backbone frozen. The embeddings of the train and val images are
  computed once (eval frame, no augmentation, the usual linear-probe protocol) and only
  the head is trained; the backbone's maps are bit-identical to the frozen model's.
- ``lora``: peft LoRA adapters on the registry's target modules (query / value
  projections) plus the head; the backbone's own weights stay as they were. Saved: the
  adapter and the head.
- ``full``: every weight, the backbone at a lower learning rate than the head. From
  random weights this is training from scratch. Saved: all weights.

Recipe (defaults in `config.Finetune`): AdamW, cosine schedule with linear warm-up,
gradient clipping, class-weighted cross-entropy (the pool is imbalanced), random resized
crop + horizontal flip + colour jitter on the model's input frame; mixed precision and
gradient accumulation on a GPU; the best epoch by validation accuracy (ties: macro-F1)
is kept, with optional early stopping.

Modules: `splits` (the stratified, church-disjoint train/val split, never touching the
annotated images' churches, and the held-out test items), `plan` (runs, their names,
recipes and folders, the variants' map stores), `training` (the loop) and `checkpoints`
(building a backbone, loading a trained run).
"""

from .checkpoints import FinetuneError, checkpoint_hash, load_run, read_manifest
from .plan import Run, code_version, map_jobs, plan, recipe, run_dir, runs_table, strategy_of, variant_name
from .splits import STYLES, Split, check_no_leak, make_split, splits_for, test_items
from .training import (
                       PROGRESS_PREFIX,
                       class_weights,
                       color_jitter,
                       evaluate_run,
                       macro_f1,
                       train_all,
                       train_run,
)

__all__ = [
    "PROGRESS_PREFIX", "STYLES", "FinetuneError", "Run", "Split", "check_no_leak", "checkpoint_hash",
    "class_weights", "code_version", "color_jitter", "evaluate_run", "load_run", "macro_f1",
    "make_split", "map_jobs", "plan", "read_manifest", "recipe", "run_dir", "runs_table",
    "splits_for", "strategy_of", "test_items", "train_all", "train_run", "variant_name",
]
