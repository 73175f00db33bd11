"""Q2 fine-tuning: linear probe, LoRA and full fine-tuning on the style-labelled pool.

A *run* is one (model choice, strategy, seed). `train_run` trains it as a pure function of
its arguments: it loads the data and the model itself, writes everything under a
content-keyed folder and returns the run's manifest, so a scheduler can run it in another
process or on another machine. A finished run is reused (its manifest exists); a killed
run resumes from its last completed epoch and ends with the same weights as an
uninterrupted one (each epoch's randomness is seeded by (seed, epoch)).

Strategies (a linear head on the pooled embedding, the one `LoadedModel.score` and
Grad-CAM use): ``linear_probe`` (backbone frozen, embeddings computed once), ``lora`` (peft
adapters on the registry's target modules) and ``full`` (every weight). The recipe's
defaults are in `config.Finetune`. Modules: `splits`, `plan`, `training`, `checkpoints`.
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
