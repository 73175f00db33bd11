"""The params schema: one validated YAML file per study profile. Unknown keys and bad values
are errors that name the file, the key and what is allowed (or the closest valid key), so a
typo never runs a study with silent defaults.

Rules between keys (`Params._cross_field_rules`): ``metrics.headline_percentile`` is one of
``metrics.percentiles``; a profile holds a WikiChurches study (``dataset`` and ``models``), the
``shared_interest`` study and / or the ``photos`` study; every model that ``sanity.models`` or
``finetune.strategies`` names is in ``models``, and a sanity variant other than ``frozen`` is
one of its strategies.
"""

from .inputs import (
    SI_SUBJECTS,
    CocoDataset,
    InputSpec,
    MasksDataset,
    ModelChoice,
    ParamsError,
    SIModelChoice,
    SyntheticDataset,
    SyntheticHumanAttentionDataset,
)
from .loading import load_params
from .sections import (
    BASELINE_NAMES,
    RULES,
    STRATEGIES,
    Execution,
    Extraction,
    Finetune,
    Metrics,
    Params,
    Photos,
    PhotosSanity,
    Sanity,
    SharedInterest,
)

__all__ = ["BASELINE_NAMES", "RULES", "SI_SUBJECTS", "STRATEGIES", "CocoDataset", "Execution",
           "Extraction", "Finetune", "InputSpec", "MasksDataset", "Metrics", "ModelChoice",
           "Params", "ParamsError", "Photos", "PhotosSanity", "SIModelChoice", "Sanity",
           "SharedInterest", "SyntheticDataset", "SyntheticHumanAttentionDataset", "load_params"]
