"""Reading a feed file, streamed: CSV, a JSON array, or NDJSON.

Each reader yields `(row number, row)` one at a time, so memory stays flat however long the
file is; the row is a dict, or a `RowError` when the row itself is unusable (a CSV row with
the wrong number of fields, a JSON value that is not an object) — the import rejects that
row and goes on. A file that cannot be parsed at all (bad encoding, broken quoting, invalid
JSON) raises `FileUnreadable`, and the import fails without loading anything.

Row numbers count records from 1, the CSV header not included.
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import orjson

from mercato.ingest.errors import FileUnreadable
from mercato.ingest.mapping import MappingSpec, RowError

Row = tuple[int, dict[str, Any] | RowError]
FORMATS = ("csv", "json", "ndjson")
MAX_FIELD_BYTES = 1 << 20  # one CSV field: 1 MiB (descriptions with markup can be long)
MAX_NDJSON_LINE = 4 << 20


def format_of(file_name: str, spec: MappingSpec) -> str:
    """The mapping's format if it names one, else the file's extension."""
    if spec.format is not None:
        return spec.format
    suffix = Path(file_name).suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "ndjson"
    if suffix in FORMATS:
        return suffix
    if suffix in ("tsv", "txt"):
        return "csv"
    raise FileUnreadable(
        "IMPORT_FORMAT_UNKNOWN",
        f"cannot tell the format of {file_name!r}: name it in the mapping (format = ...)",
    )


def read_rows(path: Path, file_format: str, spec: MappingSpec) -> Iterator[Row]:
    readers = {"csv": _csv_rows, "json": _json_rows, "ndjson": _ndjson_rows}
    with path.open("rb") as raw:
        yield from readers[file_format](raw, spec)


def _encoding(raw: BinaryIO, declared: str) -> str:
    """The byte-order mark wins over the declared encoding (and is not part of the data)."""
    head = raw.read(4)
    raw.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return declared


def _csv_rows(raw: BinaryIO, spec: MappingSpec) -> Iterator[Row]:
    encoding = _encoding(raw, spec.encoding)
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    reader = csv.reader(text, delimiter=spec.delimiter, quotechar=spec.quotechar, strict=True)
    row_number = 0
    csv.field_size_limit(MAX_FIELD_BYTES)
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header or any(not name for name in header):
            raise FileUnreadable(
                "IMPORT_FILE_MALFORMED", "the CSV header is empty or has a blank column name"
            )
        if len(set(header)) != len(header):
            raise FileUnreadable("IMPORT_FILE_MALFORMED", "the CSV header names a column twice")
        width = len(header)
        for record in reader:
            if not record:
                continue  # a blank line
            row_number += 1
            if "\x00" in "".join(record):
                raise FileUnreadable(
                    "IMPORT_FILE_MALFORMED",
                    f"a NUL character at data row {row_number}: is the file UTF-16 "
                    "without a byte-order mark (set `encoding` in the mapping)?",
                )
            if len(record) != width:
                yield (
                    row_number,
                    RowError(
                        "row",
                        "ragged_row",
                        len(record),
                        f"the row has {len(record)} fields, the header {width}",
                    ),
                )
                continue
            yield row_number, dict(zip(header, record, strict=True))
    except UnicodeDecodeError:
        raise FileUnreadable(
            "IMPORT_FILE_ENCODING",
            f"the file is not valid {encoding} (at or after data row {row_number + 1})",
        ) from None
    except csv.Error as error:
        raise FileUnreadable(
            "IMPORT_FILE_MALFORMED", f"CSV unreadable at data row {row_number + 1}: {error}"
        ) from None


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


class _LongNumberGuard:
    """A JSON file as ijson reads it, refusing a run of digits longer than Python converts
    to an int (`sys.get_int_max_str_digits()`): on such an integer ijson's C backend crashes
    the whole process (ijson 3.6.0, SIGSEGV), which would then crash again on every resume.
    It does not parse: digits inside a string count too (no product value has thousands)."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._too_long = b"0" * (limit + 1)
        self._tail = b""  # the digits the last read ended with

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        window = self._tail + chunk
        # Every digit as "0", then a plain substring search: several times faster than a regex.
        if self._too_long in window.translate(_DIGITS_AS_ZERO):
            raise FileUnreadable(
                "IMPORT_FILE_MALFORMED",
                f"a number of more than {sys.get_int_max_str_digits()} digits",
            )
        self._tail = window[len(window.rstrip(b"0123456789")) :]
        return chunk


def _json_rows(raw: BinaryIO, spec: MappingSpec) -> Iterator[Row]:
    start = 3 if raw.read(3) == codecs.BOM_UTF8 else 0
    raw.seek(start)
    prefix = f"{spec.records}.item" if spec.records else "item"
    if not spec.records:
        first = raw.read(64).lstrip()
        raw.seek(start)
        if first and not first.startswith(b"["):
            raise FileUnreadable(
                "IMPORT_FILE_MALFORMED",
                "the JSON file is not an array of products "
                "(for an array inside an object, set `records` in the mapping)",
            )
    row_number = 0
    try:
        limit = sys.get_int_max_str_digits()
        source = _LongNumberGuard(raw, limit) if limit else raw
        for item in ijson.items(source, prefix):
            row_number += 1
            yield row_number, _object_or_error(item)
    except (ijson.JSONError, UnicodeDecodeError) as error:
        raise FileUnreadable(
            "IMPORT_FILE_MALFORMED", f"invalid JSON after product {row_number}: {error}"
        ) from None


def _ndjson_rows(raw: BinaryIO, spec: MappingSpec) -> Iterator[Row]:
    row_number = 0
    for line_number, line in enumerate(raw, start=1):
        if line_number == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[3:]
        if len(line) > MAX_NDJSON_LINE:
            raise FileUnreadable("IMPORT_FILE_MALFORMED", f"line {line_number} is too long")
        if not line.strip():
            continue
        row_number += 1
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise FileUnreadable(
                "IMPORT_FILE_MALFORMED", f"invalid JSON on line {line_number}: {error}"
            ) from None
        yield row_number, _object_or_error(item)


def _object_or_error(item: Any) -> dict[str, Any] | RowError:
    if isinstance(item, dict):
        return item
    return RowError("row", "not_an_object", str(item)[:200], "each product must be a JSON object")
