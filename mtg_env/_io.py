"""Files the package writes: strict JSON that keeps NaN and ±inf apart, written atomically."""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

#: How a non-finite float is spelled in the package's JSON files (strict JSON has no NaN or Infinity): the
#: spellings of JavaScript and of Python's lenient JSON, so they read back as floats with :func:`from_json_safe`.
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_json_safe(value: Any) -> Any:
    """``value`` (dicts, lists, tuples, numbers, numpy scalars and arrays) with every non-finite float spelled as
    a string of :data:`NON_FINITE`, so that ``json.dumps(..., allow_nan=False)`` accepts it and NaN, ``inf`` and
    ``-inf`` stay distinct (a diverged run's losses are ``inf``, an undefined metric is NaN)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # numpy arrays and scalars, torch tensors
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    return value


def from_json_safe(value: Any) -> Any:
    """The inverse of :func:`to_json_safe`: the strings of :data:`NON_FINITE` back to floats."""
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: from_json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json_safe(v) for v in value]
    return value


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either its old self or complete, never half written: a
    temporary file in the same directory, flushed to disk, then renamed over ``path``. The file gets the mode any
    new file gets (0o666 less the umask), as ``open(path, "w")`` would give it."""
    path = Path(path)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new file with a unique name beside ``path``, open for writing: ``(descriptor, name)``. Not
    ``tempfile.mkstemp``: its files are 0o600 whatever the umask, and the rename would hand that mode to ``path``;
    ``os.open`` with 0o666 lets the umask decide."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


def dump_json(path: str | Path, value: Any, indent: int | None = 1) -> None:
    """``value`` as strict JSON (non-finite floats spelled as in :data:`NON_FINITE`), written atomically."""
    write_atomic(path, json.dumps(to_json_safe(value), indent=indent, allow_nan=False))


def load_json(path: str | Path) -> Any:
    """A file written by :func:`dump_json`, non-finite floats restored."""
    return from_json_safe(json.loads(Path(path).read_text()))
