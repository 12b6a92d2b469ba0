"""The streaming multipart reader: any chunking of a body gives the same parts and bytes (property); a
small upload is held in memory (no file when its blob is known), a large one streams to a temporary file."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from roomserver.api.uploads import receive_form
from roomserver.storage.blobs import MEMORY_BYTES, BlobStore

BOUNDARY = "----b0undary"


def _body(spec: bytes, data: bytes, port: bytes) -> bytes:
    parts = [
        ("spec", None, spec),
        ("data", "file.bin", data),
        ("port", None, port),
        ("ignored", None, b"zzz"),
    ]
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def _request(body: bytes, cuts: list[int]) -> Request:
    edges = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    chunks = [body[a:b] for a, b in itertools.pairwise(edges)]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=5000).map(lambda b: b + f"\r\n--{BOUNDARY}".encode()[: len(b) % 12]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
)
async def test_any_chunking_yields_the_same_parts(tmp_path: Path, data: bytes, cuts: list[int]) -> None:
    blobs = BlobStore(tmp_path)
    blobs.open()
    spec = b'{"name":"a","type":"t"}'
    form = await receive_form(
        _request(_body(spec, data, b"text.generate"), cuts), blobs, max_data=10_000, max_field=100
    )
    assert form.fields == {"spec": spec, "port": b"text.generate"}
    assert form.upload is not None
    assert form.upload.size == len(data)
    digest = form.upload.commit()
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.path(digest).read_bytes() == data
    assert list(blobs.tmp_dir.iterdir()) == []


def test_a_small_upload_of_a_known_blob_touches_no_file_and_a_large_one_spills(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    blobs.open()
    small = b"# the same seed, sent to many rooms\n"
    first = blobs.start_upload(limit=10 * MEMORY_BYTES)
    first.write(small)
    assert list(blobs.tmp_dir.iterdir()) == []  # held in memory
    digest = first.commit()
    stored = blobs.path(digest).stat()
    again = blobs.start_upload(limit=10 * MEMORY_BYTES)
    assert again.holds(len(small))
    again.write(small)
    assert again.stored() == digest  # committing it needs no I/O
    assert again.commit() == digest
    assert blobs.path(digest).stat().st_mtime_ns == stored.st_mtime_ns  # kept as it was, not rewritten
    large = bytes(range(256)) * (MEMORY_BYTES // 256 + 1)
    upload = blobs.start_upload(limit=10 * MEMORY_BYTES)
    upload.write(large[:1000])
    assert not upload.holds(len(large) - 1000)
    upload.write(large[1000:])
    assert len(list(blobs.tmp_dir.iterdir())) == 1  # past MEMORY_BYTES: streamed to a temporary file
    assert blobs.path(upload.commit()).read_bytes() == large
    dropped = blobs.start_upload(limit=10 * MEMORY_BYTES)
    dropped.write(large)
    dropped.discard()
    assert list(blobs.tmp_dir.iterdir()) == []
