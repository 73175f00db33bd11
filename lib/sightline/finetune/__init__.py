"""Q2 fine-tuning: linear probe, LoRA and full fine-tuning on the style-labelled pool, one
resumable, content-keyed run per (model choice, strategy, seed) (docs/finetuning.md)."""

from .checkpoints import FinetuneError, checkpoint_hash, load_run, read_manifest
from .plan import Run, code_version, map_jobs, plan, recipe, run_dir, runs_table, strategy_of, variant_name
from .splits import STYLES, Split, check_no_leak, make_split, splits_for, test_items
from .training import PROGRESS_PREFIX, evaluate_run, train_all, train_run

__all__ = [
    "PROGRESS_PREFIX", "STYLES", "FinetuneError", "Run", "Split", "check_no_leak", "checkpoint_hash",
    "code_version", "evaluate_run", "load_run", "make_split", "map_jobs", "plan", "read_manifest",
    "recipe", "run_dir", "runs_table", "splits_for", "strategy_of", "test_items", "train_all", "train_run",
    "variant_name",
]
