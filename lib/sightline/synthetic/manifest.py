"""The generators' manifest: a generated folder is reused only while every file it lists
matches, and made again by a newer generator or with other arguments."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..data.contract import MANIFEST, DataError, file_sha256, verify_generated

# The generators' version is their own source: any edit regenerates the demo data.
_SOURCES = sorted(Path(__file__).parent.glob("*.py"))
VERSION = hashlib.sha256(b"".join(p.read_bytes() for p in _SOURCES)).hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def reuse(root: Path, args: dict, maker: str) -> bool:
    """Whether ``root`` holds a finished generation by this version with ``args``; if not, the
    files an earlier one listed are removed. A folder with files but no manifest is refused."""
    path = root / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("version") == VERSION and old.get("args") == args and verify_generated(root) is None:
            return True
        for name in old.get("files", []):
            (root / name).unlink(missing_ok=True)
    elif root.exists() and any(root.iterdir()):
        raise DataError(f"{root} is not empty and was not made by {maker}; refusing to overwrite "
                        "it. Pick an empty folder for the demo data.")
    return False


@contextmanager
def generation(root: Path, args: dict, files: Sequence[str]) -> Iterator[None]:
    """Write ``files`` under ``root`` in the body; the manifest says unfinished until it ends,
    then records each file's SHA-256."""
    manifest = {"version": VERSION, "args": args, "files": list(files), "complete": False}
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / MANIFEST, manifest)  # an interrupted run leaves an incomplete manifest
    yield
    hashes = {name: file_sha256(root / name) for name in files}
    write_json(root / MANIFEST, {**manifest, "files": hashes, "complete": True})
