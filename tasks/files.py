"""Files written whole or not at all, JSON that stays valid, and the one reader of files users name.

Every file is written to a temporary name in the same folder, flushed and renamed, so a crash never
leaves a half-written file behind; it gets the permissions of any file the user writes (0666 less
the umask). Every text file a user names (data files, --notes) is read by `read_text`, which turns
a missing, binary or undecodable file into one DataError naming it.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


class DataError(Exception):
    """Missing, malformed or inconsistent task data: reported as one line by the CLI."""


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of the file at `path`; `what` names it in errors ("maze data file").

    DataError (`what not found: PATH`, `PATH: …`, or `PATH:LINE: …` for a byte that is not UTF-8)
    for a missing file, a directory, an unreadable file, a binary file (NUL bytes) or other text."""
    file = Path(path)
    if not file.exists():
        raise DataError(f"{what} not found: {path}")
    if file.is_dir():
        raise DataError(f"{path}: the {what} is a directory, not a file")
    try:
        data = file.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the {what}: {error.strerror or error}") from None
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise DataError(f"{path}:{line}: the {what} is a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{data[error.start]:02x}); "
                        "save it as UTF-8") from None


def _file_mode() -> int:
    """0666 less the process umask: what open() would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def json_safe(value: Any) -> Any:
    """NaN → null and ±inf → "inf"/"-inf" (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, _file_mode())   # mkstemp makes 0600; results are read like any file
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(json_safe(payload), indent=2, sort_keys=False) + "\n").encode())


def make_writable_folder(folder: Path) -> None:
    """Create `folder` and prove it takes a file (raises OSError otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
