"""The results store: one folder per run under results/, written atomically.

    results/<run_id>/summary.json            the run's record (status running → complete | diverged)
    results/<run_id>/checkpoint.safetensors  the latest checkpoint (for --resume; not committed)

Every file is written to a temporary name in the same folder and renamed, so a crash never leaves
a half-written summary. Run ids carry a timestamp and random suffix: two runs never collide.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

from tasks.files import atomic_write_bytes, atomic_write_json, make_writable_folder  # noqa: F401  (writes go through these)

SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.safetensors"


class ResultsError(Exception):
    """Unwritable output directory, unknown or mismatching run to resume: one line for the user."""


def new_run_id(task: str, model: str, preset: str, seed: int, config_hash: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{task}-{model}-{preset}-s{seed}-{config_hash[:8]}-{stamp}-{secrets.token_hex(2)}"


def ensure_writable(out: Path) -> Path:
    out = Path(out)
    try:
        make_writable_folder(out)
    except OSError as error:
        raise ResultsError(f"output directory {str(out)!r} is not writable: {error.strerror or error}") from None
    return out


def read_summary(path: Path) -> dict[str, Any]:
    """Raises ValueError (with the file named) for a corrupt or partial summary."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable summary ({error})") from None
    if not isinstance(payload, dict) or "status" not in payload or "config" not in payload:
        raise ValueError(f"{path}: not a run summary (missing status/config)")
    return payload


def iter_summaries(root: Path) -> Iterator[tuple[Path, dict[str, Any] | None, str | None]]:
    """Yield (path, summary or None, problem or None) for every summary.json below root."""
    root = Path(root)
    if not root.exists():
        return
    for path in sorted(root.rglob(SUMMARY)):
        try:
            yield path, read_summary(path), None
        except ValueError as error:
            yield path, None, str(error)


def find_resumable(root: Path, config_hash: str) -> Path | None:
    """Newest unfinished run with this config hash that has a checkpoint."""
    candidates = []
    for path, summary, _ in iter_summaries(root):
        if summary and summary.get("config_hash") == config_hash and summary.get("status") == "running" \
                and (path.parent / CHECKPOINT).exists():
            candidates.append((path.stat().st_mtime, path.parent))
    return max(candidates)[1] if candidates else None


def find_complete(root: Path, config_hash: str) -> Path | None:
    for path, summary, _ in iter_summaries(root):
        if summary and summary.get("config_hash") == config_hash and summary.get("status") in ("complete", "diverged"):
            return path.parent
    return None
