"""A feed file read, mapped and validated in chunks, ready to be copied into staging.

`FeedChunks.next()` is plain blocking Python (file reads, parsing, validation): the job calls
it in a worker thread, one chunk ahead of the copy into PostgreSQL.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mercato.ingest.formats import Row, read_rows
from mercato.ingest.mapping import MappingSpec, RowError, RowMapper
from mercato.ingest.validation import Reject, rejects_of, stage_record

STAGE_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Chunk:
    rows: int  # rows read, rejected ones included
    staged: list[tuple[Any, ...]]  # ingest.staged_rows records
    rejected: list[Reject]


class FeedChunks:
    def __init__(
        self,
        job_id: uuid.UUID,
        path: Path,
        file_format: str,
        spec: MappingSpec,
        *,
        size: int = STAGE_CHUNK,
    ) -> None:
        self._job_id = job_id
        self._spec = spec
        self._mapper = RowMapper(spec)
        self._rows: Iterator[Row] = read_rows(path, file_format, spec)
        self._size = size

    def next(self) -> Chunk | None:
        """The next chunk, or None at the end of the file. Raises FileUnreadable."""
        rows = list(itertools.islice(self._rows, self._size))
        if not rows:
            return None
        staged: list[tuple[Any, ...]] = []
        rejected: list[Reject] = []
        for row_number, row in rows:
            if isinstance(row, RowError):
                rejected += rejects_of(row_number, [row])
                continue
            values, errors = self._mapper.map(row)
            if errors:
                rejected += rejects_of(row_number, errors)
                continue
            record, refused = stage_record(self._job_id, row_number, values, self._spec)
            if record is None:
                rejected += refused
            else:
                staged.append(record)
        return Chunk(len(rows), staged, rejected)
