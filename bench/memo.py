"""Answers of `bench info` kept on disk, keyed by the question and by the suite's own source code.

Sizing a model (the width search, the FLOP count on the meta device) needs torch, and importing
torch alone takes longer than `bench info` may take on a small machine (docs/architecture.md). The
answer depends only on the command's arguments, the suite's source and the torch version, so it is
stored under a key made of exactly those and read back without importing torch. Any edit to a file
of `bench`, `models` or `tasks` changes the key, so a stored answer is never stale. Models and tasks
from plugins are not covered by the fingerprint, so their answers are never stored.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path
from typing import Any

from tasks.cache import cache_dir
from tasks.files import atomic_write_json

PACKAGES = ("bench", "models", "tasks")


@functools.lru_cache(maxsize=None)
def source_fingerprint() -> str:
    """Hash of every Python file of the suite's packages and of the installed torch version."""
    digest = hashlib.sha256(importlib.metadata.version("torch").encode())
    for package in PACKAGES:
        for folder in importlib.util.find_spec(package).submodule_search_locations:
            for path in sorted(Path(folder).rglob("*.py")):
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _path(question: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps([question, source_fingerprint()], sort_keys=True).encode()).hexdigest()
    return cache_dir() / "info" / f"{key[:32]}.json"


def recall(question: dict[str, Any]) -> dict[str, Any] | None:
    """The stored answer to `question`, or None (never stored, unreadable, or from other code)."""
    try:
        stored = json.loads(_path(question).read_text())
    except (OSError, ValueError):
        return None
    return stored.get("answer") if stored.get("question") == question else None


def remember(question: dict[str, Any], answer: dict[str, Any]) -> None:
    """Store `answer`; a cache that cannot be written only costs the next call its speed."""
    try:
        atomic_write_json(_path(question), {"question": question, "answer": answer})
    except OSError:
        pass
