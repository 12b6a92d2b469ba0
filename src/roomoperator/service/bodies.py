"""Request bodies of the operator API: an `/apply` body with its seeds, and the `/mcp/load` body (read,
like every body, through `service/reading.py`: after authentication, capped, JSON keys matched
case-insensitively; YAML bodies keep exact keys, as spec files do).

An `/apply` body is a RoomSpec (JSON `{"spec": ...}`, a bare JSON RoomSpec, or YAML), or a multipart form
holding the spec (part `spec`) and one part per seed file, named by the `seedFrom` path as the spec
writes it. Its seeds never come from an arbitrary file of the operator's disk: a multipart body brings
them; a plain body may name only files under the configured seed roots (`seeds.roots`, none by
default), and anything else is refused before any file is opened. Either way the bytes are kept in the
seed store (`service/seedstore.py`) and the spec runs against its per-content seed folder; what the body
added there stays only when the apply is accepted (`ApplyBody.deciding`), so a refused apply (the version
rule's 409, any 400) leaves nothing behind.

Every failure is an `ApiError` naming the field or part and the rule; sizes are checked while the body
streams in (a JSON or YAML spec and the spec part at most `MAX_DOCUMENT_BYTES`, seed parts and the whole
multipart body at most the `seeds.*` limits), so a refused body costs neither memory nor disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio
from fastapi import Request
from pydantic import BaseModel, ConfigDict
from python_multipart.multipart import MultipartParser, parse_options_header

from roomoperator.model.codes import ApiCode
from roomoperator.service.acceptance import Refused
from roomoperator.service.errors import ApiError
from roomoperator.service.reading import (
    CLOSE,
    chunks,
    drain,
    folded,
    json_of,
    media_of,
    read_body,
    text_of,
    too_large,
)
from roomoperator.service.seedstore import Claim, Incoming, SeedStore, SeedTooLarge
from roomoperator.settings import OperatorSettings, SeedSettings
from roomoperator.spec.errors import SpecError, SpecIssue
from roomoperator.spec.loading import LoadedSpec, check_data, load_text
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.parsing import MAX_DOCUMENT_BYTES
from roomoperator.spec.seeds import SeedPathError, check_seed_path, resolve_seed_path
from roomoperator.spec.validation import REFERENCE_WARNINGS

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
SPEC_KEYS = {"apiversion", "kind", "metadata"}
"""A JSON body holding one of these keys (any case) is a bare RoomSpec, else `{"spec": RoomSpec}`."""
SPEC_PART = "spec"
_T = TypeVar("_T")


class ApplyRequest(BaseModel):
    """The reference's `/apply` body, `{"spec": RoomSpec}` (other keys, like `force`, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    spec: RoomSpec | None = None


@dataclass(frozen=True)
class ApplyBody:
    """An `/apply` body: its spec, the seed folder (in the seed store) the spec's run reads, the spec's
    warnings for the answer, and the seed store's claim on what this body added (`deciding`)."""

    spec: RoomSpec
    base_dir: Path
    claim: Claim
    warnings: tuple[str, ...] = ()

    @contextlib.asynccontextmanager
    async def deciding(self) -> AsyncIterator[None]:
        """The block that accepts the spec (or refuses it): refused (`Refused`, `ApiError`), what the body
        added to the seed store is removed again; accepted, it stays. Any other end (an error, a
        cancellation) keeps it too: the revision may have been written."""
        try:
            yield
        except (Refused, ApiError):
            await anyio.to_thread.run_sync(self.claim.release)
            raise
        finally:
            self.claim.commit()  # a no-op once released


async def read_apply(request: Request, *, settings: OperatorSettings) -> ApplyBody:
    """The spec of an `/apply` body and its seeds, kept in the seed store until the apply is decided
    (`ApplyBody.deciding`); raises `ApiError` (keeping nothing)."""
    media = media_of(request.headers.get("content-type", "application/json"))
    store = SeedStore.of(settings)
    claim = store.claim()
    if media == "multipart/form-data":
        upload = await _receive(request, store=store, limits=settings.seeds)
        try:
            loaded = await anyio.to_thread.run_sync(parse_spec, upload.spec, upload.spec_media)
            spec = loaded.spec
            manifest = await _keeping(claim, lambda: _keep_parts(spec, upload, store, claim))
        finally:
            upload.discard()
    else:
        raw = await read_body(request, limit=MAX_DOCUMENT_BYTES)
        if not raw.strip():
            raise ApiError.apply(ApiCode.INVALID_BODY, ["body: a RoomSpec is required"])
        # Parsing and validating a large spec is CPU work: keep it off the event loop.
        loaded = await anyio.to_thread.run_sync(parse_spec, raw, media)
        spec, limits = loaded.spec, settings.seeds
        manifest = await _keeping(claim, lambda: _keep_from_roots(spec, limits, store, claim))
    warnings = tuple(_warning(issue) for issue in loaded.warnings)
    tree = await _keeping(claim, lambda: store.tree(manifest, claim=claim))
    return ApplyBody(loaded.spec, tree, claim, warnings)


async def _keeping(claim: Claim, keep: Callable[[], _T]) -> _T:
    """`keep()` on a worker thread; when it fails, what `claim` holds so far is removed again."""
    try:
        return await anyio.to_thread.run_sync(keep)
    except Exception:
        await anyio.to_thread.run_sync(claim.release)
        raise


def _warning(issue: SpecIssue) -> str:
    """A warning as the answer's text: the reference's own texts unchanged, ours with their field path."""
    return issue.message if issue.message in REFERENCE_WARNINGS else f"{issue.path}: {issue.message}"


def parse_spec(raw: bytes, media: str) -> LoadedSpec:
    """Decode, parse and validate one spec (no file is looked at: seeds are checked afterwards). JSON keys
    are matched case-insensitively; a bare RoomSpec and the reference's `{"spec": RoomSpec}` are taken."""
    text = text_of(raw)
    try:
        if media in YAML_TYPES:
            loaded = load_text(text, source="<request>")
            if len(loaded) != 1:
                raise ApiError.apply(
                    ApiCode.INVALID_BODY, [f"body: one RoomSpec document expected, got {len(loaded)}"]
                )
            return loaded[0]
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(
                415,
                {
                    "errors": [f"Content-Type: {media} is not JSON or YAML"],
                    "code": ApiCode.UNSUPPORTED_MEDIA_TYPE,
                },
            )
        data = json_of(text, code=ApiCode.INVALID_BODY)
        if isinstance(data, dict) and not SPEC_KEYS & {key.casefold() for key in data}:
            data = folded(data, ApplyRequest, code=ApiCode.INVALID_SPEC).get("spec", data)
            if data is None:
                raise ApiError.apply(ApiCode.INVALID_SPEC, ["spec: a RoomSpec is required"])
        else:
            data = folded(data, RoomSpec, code=ApiCode.INVALID_SPEC)
        return check_data(data, source="<request>")
    except SpecError as exc:
        raise ApiError.apply(
            ApiCode.INVALID_SPEC,
            [f"{issue.path or 'spec'}: {issue.message}" for issue in exc.issues],
            issues=[issue.to_json() for issue in exc.issues],
        ) from None


def _seeds_of(spec: RoomSpec) -> Iterator[tuple[str, str, str]]:
    """Each `seedFrom` of the spec: its field path, the path as written, and its normal form."""
    for index, artifact in enumerate(spec.spec.artifacts):
        if artifact.seed_from is not None:
            normal = str(check_seed_path(artifact.seed_from))  # the model checked it already
            yield f"spec.artifacts[{index}].seedFrom", artifact.seed_from, normal


# Seeds from the configured seed roots (plain bodies) ----------------------------------------------------


def _keep_from_roots(spec: RoomSpec, limits: SeedSettings, store: SeedStore, claim: Claim) -> dict[str, str]:
    """Find every seed under the seed roots (refusing the whole spec, before reading any file, when one
    is not there), then keep their bytes; the manifest (normal path -> SHA-256)."""
    found: dict[str, Path] = {}
    errors: list[str] = []
    for where, written, normal in _seeds_of(spec):
        if not limits.roots:
            errors.append(
                f"{where}: {written!r}: a spec posted over HTTP names no file on the operator's disk; "
                f"send the file with the spec in a multipart POST /apply (a part named {written!r}), or "
                "configure seeds.roots"
            )
            continue
        try:
            found[normal] = _under_roots(limits.roots, written)
        except SeedPathError as exc:
            errors.append(f"{where}: {written!r} {exc}")
    if errors:
        raise ApiError.apply(ApiCode.SEED_REFUSED, errors)
    try:
        return {
            normal: store.copy_in(path, limit=limits.max_part_bytes, claim=claim)
            for normal, path in found.items()
        }
    except SeedTooLarge as exc:
        raise too_large("a seed file", exc.limit, "seeds.max_part_bytes") from None


def _under_roots(roots: list[Path], written: str) -> Path:
    """The regular file `written` names in the first seed root that has it; symlinks out are refused."""
    for root in roots:
        try:
            path = resolve_seed_path(root, written)
        except SeedPathError:
            raise SeedPathError(
                f"leads out of the seed root {root} (through a symlink): only files inside seeds.roots "
                "are read"
            ) from None
        if path.is_file():
            return path
    shown = ", ".join(str(root) for root in roots)
    raise SeedPathError(
        f"is not a file under the seed roots ({shown}): only files inside seeds.roots are read"
    )


# Multipart bodies: the spec and its seed files in one request ------------------------------------------


@dataclass
class _Upload:
    """What a multipart body brought: the spec's bytes and media type, and each seed part by name."""

    spec: bytes = b""
    spec_media: str = "application/yaml"
    parts: dict[str, Incoming] = field(default_factory=dict)

    def discard(self) -> None:
        for incoming in self.parts.values():
            incoming.discard()


class _Receiver:
    """python-multipart callbacks filling an `_Upload`, with every limit checked as bytes arrive."""

    def __init__(self, store: SeedStore, limits: SeedSettings) -> None:
        self.upload = _Upload()
        self._store, self._limits = store, limits
        self._headers: dict[str, str] = {}
        self._field, self._value = b"", b""
        self._count = 0
        self._spec: bytearray | None = None
        self._seed: Incoming | None = None
        self._name = ""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add("_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _add(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _begin(self) -> None:
        self._count += 1
        if self._count > self._limits.max_parts:
            raise ApiError(
                413,
                {
                    "errors": [f"body: more than {self._limits.max_parts} parts (seeds.max_parts)"],
                    "code": ApiCode.BODY_TOO_LARGE,
                },
            )
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("utf-8", "replace")
        self._field, self._value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise ApiError.apply(
                ApiCode.INVALID_BODY, ["body: every part needs a name (Content-Disposition)"]
            )
        if name == SPEC_PART:
            if self._spec is not None:
                raise ApiError.apply(ApiCode.INVALID_BODY, ["body: more than one part named 'spec'"])
            self._spec = bytearray()
            media = media_of(self._headers.get("content-type", ""))
            self.upload.spec_media = (
                media if media == "application/json" or media.endswith("+json") else "application/yaml"
            )
            return
        if name in self.upload.parts:
            raise ApiError.apply(ApiCode.INVALID_BODY, [f"part {name!r}: sent more than once"])
        self._name = name
        self._seed = self.upload.parts[name] = self._store.incoming(limit=self._limits.max_part_bytes)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._seed is not None:
            try:
                self._seed.write(data[start:end])
            except SeedTooLarge as exc:
                raise too_large(f"part {self._name!r}", exc.limit, "seeds.max_part_bytes") from None
        elif self._spec is not None:
            self._spec += data[start:end]
            if len(self._spec) > MAX_DOCUMENT_BYTES:
                raise too_large(f"part {SPEC_PART!r}", MAX_DOCUMENT_BYTES)

    def _end(self) -> None:
        if self._spec is not None and self._seed is None and not self.upload.spec:
            self.upload.spec = bytes(self._spec)
        self._seed = None


async def _receive(request: Request, *, store: SeedStore, limits: SeedSettings) -> _Upload:
    """Stream a multipart body into an `_Upload` (seed parts straight to the store's temporary files)."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError.apply(ApiCode.INVALID_BODY, ["Content-Type: multipart/form-data needs a boundary"])
    body = chunks(request, limit=limits.max_total_bytes, setting="seeds.max_total_bytes")
    receiver = _Receiver(store, limits)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in body:
            # The callbacks write seed bytes to disk: off the event loop.
            await anyio.to_thread.run_sync(parser.write, chunk)
        parser.finalize()
    except ApiError as refused:
        receiver.upload.discard()
        await drain(body)  # bounded: the client still sending reads the refusal
        # Answered in the middle of the body: the rest must not be taken for the next request.
        refused.headers = {**(refused.headers or {}), **CLOSE}
        raise
    except Exception as exc:  # python-multipart's parse errors, a body cut short
        receiver.upload.discard()
        raise ApiError.apply(ApiCode.INVALID_BODY, [f"body: not a valid multipart form ({exc})"]) from None
    if not receiver.upload.spec.strip():
        receiver.upload.discard()
        raise ApiError.apply(
            ApiCode.INVALID_BODY, [f"body: a part named {SPEC_PART!r} with the RoomSpec is required"]
        )
    return receiver.upload


def _keep_parts(spec: RoomSpec, upload: _Upload, store: SeedStore, claim: Claim) -> dict[str, str]:
    """Check the parts are exactly the spec's seeds, then keep them; the manifest (path -> SHA-256)."""
    wanted: dict[str, str] = {}
    missing: list[str] = []
    sent = {_normal(name): name for name in upload.parts}
    for where, written, normal in _seeds_of(spec):
        wanted[normal] = written
        if normal not in sent:
            missing.append(f"{where}: {written!r} was not sent: add a part named {written!r} with the file")
    extra = [
        f"part {name!r}: names no seedFrom of the spec (parts are the spec, named 'spec', and its seed files)"
        for normal, name in sent.items()
        if normal not in wanted
    ]
    if missing or extra:
        raise ApiError.apply(ApiCode.SEEDS_MISMATCH, [*missing, *extra])
    return {normal: store.keep(upload.parts[name], claim=claim) for normal, name in sent.items()}


def _normal(name: str) -> str:
    """A part name in the normal form of a `seedFrom` path (`./a/b` -> `a/b`); unusable names stay as they
    are (and match no seed)."""
    try:
        return str(check_seed_path(name))
    except SeedPathError:
        return name


class McpProvider(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    url: str
    visibility: str | None = None


class McpLoadRequest(BaseModel):
    """`POST /mcp/load`: the providers to forward to the room server (unknown fields are dropped)."""

    model_config = ConfigDict(extra="ignore")

    providers: list[McpProvider]
