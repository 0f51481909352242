"""A form with one file in it (``multipart/form-data``), streamed to disk within a cap.

:func:`read_upload` is the upload counterpart of :func:`mailer.web.common.read_form`.
The body is parsed as it arrives by ``python-multipart`` (the parser Starlette
itself uses); the file part is written straight to the path the caller gives,
a chunk at a time, so a 100 MB file never sits in memory, and every chunk is
shown to the caller's ``watch`` as it passes. The rules:

* a body whose declared ``Content-Length`` is over the cap (plus room for the
  other fields) is refused before a byte of it is read, a streamed one as soon
  as the file passes the cap: ``413``;
* text fields come before the file (as browsers send a form's fields in
  document order) and together stay within :data:`~mailer.web.common.MAX_BODY_BYTES`;
  they must be UTF-8; each is given once. ``before_file`` sees them before
  any of the file is written, so the caller can check a CSRF token first;
* exactly one file part (``400`` for none or a second one).

Every refusal is a :class:`~mailer.web.common.BodyError`; the caller removes
whatever was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from mailer.web.common import MAX_BODY_BYTES, BodyError, Form


@dataclass
class UploadedFile:
    """The file part of an upload: the name it was sent under and its size in bytes."""

    filename: str
    size: int


class _Parts:
    """The state of one parse: the current part's headers, fields so far, the file."""

    def __init__(
        self,
        dest: Path,
        limit: int,
        watch: Callable[[bytes], None],
        before_file: Callable[[Form], None],
    ) -> None:
        self.dest = dest
        self.limit = limit
        self.watch = watch
        self.before_file = before_file
        self.fields: dict[str, list[str]] = {}
        self.field_bytes = 0
        self.header_name = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.value = bytearray()
        self.out: BinaryIO | None = None
        self.file: UploadedFile | None = None

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        key = self.header_name.lower()
        self.headers[key] = self.headers.get(key, b"") + data[start:end]

    def header_end(self) -> None:
        self.header_name = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.headers = {}
        self.name = _text(options.get(b"name", b""), "a field name")
        if b"filename" not in options:
            if self.name in self.fields:
                raise BodyError(400, f"the form gives the field {self.name!r} more than once")
            return
        if self.file is not None:
            raise BodyError(400, "send one file at a time")
        self.before_file(Form(self.fields))
        filename = _text(options[b"filename"], "the file's name")
        self.file = UploadedFile(filename.replace("\\", "/").rsplit("/", 1)[-1][:200], 0)
        self.out = self.dest.open("wb")

    def data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.out is None:
            self.field_bytes += len(chunk)
            if self.field_bytes > MAX_BODY_BYTES:
                raise BodyError(413, f"the form's fields are too large (at most {MAX_BODY_BYTES})")
            self.value += chunk
            return
        assert self.file is not None
        self.file.size += len(chunk)
        if self.file.size > self.limit:
            raise too_large(self.limit)
        self.out.write(chunk)
        self.watch(chunk)

    def part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        elif self.name:
            self.fields[self.name] = [_text(bytes(self.value), f"the field {self.name!r}")]
        self.name = ""
        self.value = bytearray()

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, f"{what} is not UTF-8") from None


def too_large(limit: int) -> BodyError:
    return BodyError(413, f"the file is too large: at most {limit // (1024 * 1024)} MB is accepted")


async def read_upload(
    request: Request,
    dest: Path,
    *,
    limit: int,
    watch: Callable[[bytes], None],
    before_file: Callable[[Form], None],
) -> tuple[Form, UploadedFile]:
    """The text fields of the posted form and its one file, written to ``dest``.

    ``limit`` caps the file in bytes; ``watch`` is given each chunk of the
    file as it is written; ``before_file`` is given the fields sent before the
    file and may refuse them by raising :class:`BodyError`.
    """
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary", b"")
    if kind != b"multipart/form-data" or not boundary:
        raise BodyError(400, "send the file from the upload form (multipart/form-data)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MAX_BODY_BYTES:
        raise too_large(limit)
    parts = _Parts(dest, limit, watch, before_file)
    parser = MultipartParser(
        boundary,
        {
            "on_header_field": parts.header_field,
            "on_header_value": parts.header_value,
            "on_header_end": parts.header_end,
            "on_headers_finished": parts.headers_finished,
            "on_part_data": parts.data,
            "on_part_end": parts.part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise BodyError(400, "the upload is not a well-formed multipart form") from None
    finally:
        parts.close()
    if parts.out is not None:  # the body ended inside the file
        raise BodyError(400, "the upload ended before the file did; send it again")
    if parts.file is None:
        raise BodyError(400, "choose a file to upload")
    return Form(parts.fields), parts.file
