"""`load_params`: a params file read, validated and its relative paths resolved, every
problem one readable line naming the key, the allowed values or a close key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from .inputs import Dataset, HumanAttentionData, ModelChoice, ParamsError
from .sections import Params


def _resolve_paths(params: Params, base: Path) -> Params:
    """Relative paths in the file are relative to the project root ``base``."""

    def rooted(section: Any, field: str = "root") -> Any:
        return section.model_copy(update={field: _resolve(getattr(section, field), base)})

    update: dict[str, Any] = {"extraction": rooted(params.extraction, "cache_dir"),
                              "finetune": rooted(params.finetune, "checkpoint_dir"),
                              "models": tuple(_resolve_checkpoint(m, base) for m in params.models)}
    if params.dataset is not None:
        update["dataset"] = rooted(params.dataset)
    if (study := params.shared_interest) is not None:
        update["shared_interest"] = study.model_copy(update={
            "dataset": rooted(study.dataset),
            "models": tuple(_resolve_checkpoint(m, base) for m in study.models)})
    if params.photos is not None:
        update["photos"] = rooted(params.photos)
    return params.model_copy(update=update)


def _resolve_checkpoint(choice: ModelChoice, base: Path) -> ModelChoice:
    """A spec's checkpoint path resolved against ``base``; a missing one is an error here."""
    if choice.checkpoint is None:
        return choice
    path = _resolve(choice.checkpoint, base)
    if not path.exists():
        raise ParamsError(f"model {choice.key!r}: checkpoint {path} does not exist")
    return choice.model_copy(update={"checkpoint": path})


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_params(path: str | Path, base: str | Path | None = None) -> Params:
    """Read and validate a params file; relative paths resolve against ``base`` (default: cwd)."""
    path = Path(path)
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" Profiles in {path.parent}/: {', '.join(available)}." if available else ""
        raise ParamsError(f"{path}: no such params file.{hint}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        problems = [_explain(e) for e in _one_branch(error.errors())]
        if len(problems) == 1:
            raise ParamsError(f"{path}: {problems[0]}") from None
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ParamsError(f"{path}: invalid params:\n{listed}") from None
    try:
        return _resolve_paths(params, Path(base) if base is not None else Path.cwd())
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}") from None


_DATASET_CLASSES = {get_args(c.model_fields["kind"].annotation)[0]: c
                    for union in (Dataset, HumanAttentionData) for c in get_args(get_args(union)[0])}


def _is_branch(part: str) -> bool:
    """A union member's tag in a pydantic location (``literal['all']``, ``tuple[SanityModel, ...]``)."""
    return "[" in part


def _one_branch(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of a union key's failed members, the errors of the one the value was meant for: a
    ``Literal`` member's for a string, the others' for a list or mapping."""
    def literal(error: dict[str, Any]) -> bool:
        return any(str(part).startswith("literal[") for part in error["loc"])

    def key(error: dict[str, Any]) -> tuple:
        loc = [str(part) for part in error["loc"]]
        return tuple(loc[:next((i for i, p in enumerate(loc) if _is_branch(p)), len(loc))])

    def meant(error: dict[str, Any]) -> bool:
        siblings = [e for e in errors if key(e) == key(error)]
        if not any(literal(e) for e in siblings) or all(literal(e) for e in siblings):
            return True
        given = next(e["input"] for e in siblings if literal(e))
        return literal(error) == isinstance(given, str)

    return [e for e in errors if meant(e)]


def _explain(error: dict[str, Any]) -> str:
    """One readable line per pydantic error: dotted key, problem, allowed values or a close key."""
    loc = [str(part) for part in error["loc"] if not _is_branch(str(part))]
    key = ".".join(p for p in loc if p not in _DATASET_CLASSES) or "(top level)"
    if error["type"] == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        allowed = sorted(parent_model.model_fields) if parent_model else []
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        return f"unknown key '{key}'.{suggestion} Allowed here: {', '.join(allowed)}"
    if error["type"] == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        given = error.get("input")
        allowed = [a.strip().strip("'") for a in expected.replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(given), allowed, n=1)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        return f"'{key}' is {given!r}; allowed: {expected}.{suggestion}"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    if error["type"] == "value_error":  # a rule's own message names the keys
        message = str(error["ctx"]["error"])
        return f"'{key}': {message}" if loc else message
    return f"'{key}': {error['msg']} (got {error.get('input')!r})"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The schema class at a dotted location (a data set's kind in it names its class)."""
    model: Any = Params
    for part in loc:
        if part.isdigit():
            continue
        if part in _DATASET_CLASSES:
            model = _DATASET_CLASSES[part]
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """Unwrap tuple[...] / unions / Annotated to the first BaseModel inside."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or getattr(annotation, "__metadata__", ()):
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    origin = getattr(annotation, "__origin__", None)
    if origin is not None:
        return _inner_model(origin)
    return None
