"""Where a `seedFrom` path points: always a file inside the spec's own folder, never outside it.

The reference joined `seedFrom` to the process's working directory and accepted absolute paths and
`../` escapes. We resolve it against the folder of the spec file and refuse anything that leaves it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

MAX_NAME_BYTES = 255
"""Longest part of a `seedFrom` path (bytes, UTF-8): a file name no common file system goes beyond."""
MAX_PATH_BYTES = 1024
"""Longest `seedFrom` path (bytes, UTF-8)."""


class SeedPathError(ValueError):
    """A `seedFrom` value that is not a relative path inside the spec's folder; the message says why."""


def check_seed_path(seed_from: str) -> PurePosixPath:
    """The lexical checks, which need no file system: relative, `/`-separated, not escaping with `..`."""
    if not seed_from.strip():
        raise SeedPathError("must be a relative file path (got an empty string)")
    if "\\" in seed_from:
        raise SeedPathError(f"must use '/' as the path separator (got {seed_from!r})")
    if "\x00" in seed_from:
        raise SeedPathError("must not contain a NUL character")
    size = len(seed_from.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise SeedPathError(f"must be at most {MAX_PATH_BYTES} bytes long (got {size})")
    path = PurePosixPath(seed_from)
    for part in path.parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise SeedPathError(
                f"each part of the path must be at most {MAX_NAME_BYTES} bytes ({part[:24]!r}... is longer)"
            )
    if path.is_absolute() or PureWindowsPath(seed_from).drive:
        raise SeedPathError(f"must be relative to the spec's folder (got the absolute path {seed_from!r})")
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise SeedPathError(f"must stay inside the spec's folder ({seed_from!r} escapes it with '..')")
    if depth == 0:
        raise SeedPathError(f"must name a file inside the spec's folder (got {seed_from!r})")
    return path


def resolve_seed_path(base_dir: Path, seed_from: str) -> Path:
    """The real path of `seed_from` inside `base_dir`, symlinks followed.

    Raises SeedPathError when the path is absolute, escapes with `..`, or leads (through a symlink)
    outside `base_dir`. Whether the file exists is not checked here: the engine's PRE_CHECKS do that.
    """
    relative = check_seed_path(seed_from)
    try:
        root = base_dir.resolve()
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop, a name the file system refuses
        raise SeedPathError(f"cannot be followed ({getattr(error, 'strerror', None) or error})") from None
    if not resolved.is_relative_to(root):
        raise SeedPathError(
            f"must stay inside the spec's folder ({seed_from!r} leads out of it through a symlink)"
        )
    return resolved
