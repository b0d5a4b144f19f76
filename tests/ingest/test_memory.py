"""Memory stays flat in the row count: a million-row feed through the staging pipeline
(read → map → validate → staged record), in a process of its own, with its peak RSS after
100,000 rows and after 1,000,000 recorded. Not timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROWS = 1_000_000
PROBE = """
import resource, sys, uuid
from itertools import islice
from pathlib import Path
from mercato.ingest.formats import read_rows
from mercato.ingest.mapping import RowMapper, parse_mapping
from mercato.ingest.validation import stage_record

spec = parse_mapping('[fields]\\nsku = "sku"\\nname = "name"\\nprice = {column = "cents", transforms = ["cents"]}\\ngtin = "gtin"\\n[attributes]\\ncolour = "colour"')
mapper, job, staged, peaks = RowMapper(spec), uuid.uuid4(), 0, []
for number, row in read_rows(Path(sys.argv[1]), "csv", spec):
    values, errors = mapper.map(row)
    record, rejects = stage_record(job, number, values, spec)
    staged += record is not None
    if number in (100_000, 1_000_000):
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(staged, *peaks)
"""


def test_a_million_rows_are_staged_in_flat_memory(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    with feed.open("w") as out:
        out.write("sku,name,cents,gtin,colour\n")
        for i in range(ROWS):
            out.write(f"sku-{i},Product number {i} with a longer name,{i % 10_000},,red\n")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(feed)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    staged, at_100k, at_1m = map(int, result.stdout.split())
    assert staged == ROWS
    growth_kib = at_1m - at_100k
    (tmp_path / "memory.json").write_text(json.dumps({"kib_100k": at_100k, "kib_1m": at_1m}))
    print(f"peak RSS: {at_100k} KiB after 100k rows, {at_1m} KiB after 1M rows")
    # Ten times the rows may not cost more than a few MiB (allocator noise), let alone
    # ten times the memory.
    assert growth_kib < 8 * 1024, f"{growth_kib} KiB more after 1M rows than after 100k"
