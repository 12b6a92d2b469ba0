"""Streaming multipart reader: the `data` part goes straight to a blob upload, never whole into memory.

Starlette's `request.form()` spools file parts to a temporary file that would then be copied again, and
cannot stop a too-large part while it streams; this reader feeds python-multipart's push parser chunk by
chunk, writes `data` (hashing as it goes) in a worker thread once per MiB while the next MiB is parsed (the
first MiB is held in memory by the blob upload: no thread hop for a small one), and refuses with 413 as
soon as `data` passes the limit. Small parts (`spec`, `parents`, `port`, `entityId`) are kept in memory,
bounded. The whole body was authorised and is capped and timed by `api.guard`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from roomserver.errors import RoomServerError, artifact_error
from roomserver.storage.blobs import BlobStore, BlobUpload, UploadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELDS: Final = frozenset({"spec", "parents", "port", "entityId"})
FILE_PART: Final = "data"
_FLUSH_BYTES: Final = 1024 * 1024


def _too_large(limit: int, what: str) -> RoomServerError:
    return RoomServerError(413, f"{what} exceeds the limit of {limit} bytes", error="PayloadTooLarge")


@dataclass
class ReceivedForm:
    """Small fields by name, and the `data` part streamed into an uncommitted blob upload (or None)."""

    fields: dict[str, bytes] = field(default_factory=dict)
    upload: BlobUpload | None = None

    def discard(self) -> None:
        if self.upload is not None:
            self.upload.discard()


class _FormReader:
    """python-multipart callbacks, collecting parts; `flush` moves pending `data` bytes to disk."""

    def __init__(self, blobs: BlobStore, *, max_data: int, max_field: int):
        self.form = ReceivedForm()
        self._blobs = blobs
        self._max_data = max_data
        self._max_field = max_field
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._part: str | None = None
        self._field = bytearray()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._writing: asyncio.Future[None] | None = None
        self._data_size = 0
        self._data_done = False
        self.ended = False

    def on_part_begin(self) -> None:
        self._headers, self._part = {}, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition"))
        name = params.get(b"name", b"").decode("utf-8", errors="replace")
        if name in self.form.fields or (name == FILE_PART and self.form.upload is not None):
            raise artifact_error(400, "InvalidMultipart", f"part '{name}' is given more than once")
        if name == FILE_PART:
            self.form.upload = self._blobs.start_upload(limit=self._max_data)
        self._part = name
        self._field = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == FILE_PART:
            self._data_size += end - start
            if self._data_size > self._max_data:
                raise UploadTooLarge(self._max_data)
            self._pending.append(data[start:end])
            self._pending_size += end - start
        elif self._part in FIELDS:
            self._field += data[start:end]
            if len(self._field) > self._max_field:
                raise _too_large(self._max_field, f"form part '{self._part}'")

    def on_part_end(self) -> None:
        if self._part == FILE_PART:
            self._data_done = True
        elif self._part in FIELDS:
            self.form.fields[self._part] = bytes(self._field)
        self._part = None

    def on_end(self) -> None:
        self.ended = True

    async def flush(self, *, final: bool = False) -> None:
        """Hand pending `data` bytes to the writer thread (one write in flight, overlapping the parsing)."""
        upload = self.form.upload
        if upload is not None and self._pending and (final or self._pending_size >= _FLUSH_BYTES):
            await self.settle()
            size = self._pending_size
            chunk, self._pending, self._pending_size = b"".join(self._pending), [], 0
            if upload.holds(size):  # still in memory: no I/O, no thread hop
                upload.write(chunk)
            else:
                self._writing = asyncio.ensure_future(asyncio.to_thread(upload.write, chunk))
        if final:
            await self.settle()

    async def settle(self) -> None:
        """Wait for the write in flight, if any."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    def check_complete(self) -> None:
        if not self.ended or (self.form.upload is not None and not self._data_done):
            raise artifact_error(
                400, "InvalidMultipart", "multipart body is incomplete (no closing boundary)"
            )


async def receive_form(request: Request, blobs: BlobStore, *, max_data: int, max_field: int) -> ReceivedForm:
    """Read a multipart/form-data body; on any error the partial upload is discarded."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise artifact_error(400, "InvalidContentType", "body must be multipart/form-data with a boundary")
    reader = _FormReader(blobs, max_data=max_data, max_field=max_field)
    callbacks: MultipartCallbacks = {
        "on_part_begin": reader.on_part_begin,
        "on_header_field": reader.on_header_field,
        "on_header_value": reader.on_header_value,
        "on_header_end": reader.on_header_end,
        "on_headers_finished": reader.on_headers_finished,
        "on_part_data": reader.on_part_data,
        "on_part_end": reader.on_part_end,
        "on_end": reader.on_end,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            await reader.flush()
        parser.finalize()
        await reader.flush(final=True)
        reader.check_complete()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await reader.settle()
        reader.form.discard()
        if isinstance(exc, MultipartParseError):
            raise artifact_error(400, "InvalidMultipart", f"malformed multipart body: {exc}") from None
        raise
    return reader.form
