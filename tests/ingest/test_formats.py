"""Reading feed files: streamed rows, unusable rows reported, broken files refused."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from mercato.ingest.errors import FileUnreadable
from mercato.ingest.formats import format_of, read_rows
from mercato.ingest.mapping import MappingSpec, RowError, parse_mapping


def _rows(path: Path, file_format: str, spec: MappingSpec | None = None) -> list[object]:
    return list(read_rows(path, file_format, spec or MappingSpec()))


def test_csv_with_a_bom_quotes_and_another_delimiter(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_bytes(
        codecs.BOM_UTF8 + b'sku;name;note\n1;"Cups; set of 4";"two\nlines"\n\n2;Mug;"say ""hi"""\n'
    )
    rows = _rows(feed, "csv", parse_mapping('delimiter = ";"'))
    assert rows == [
        (1, {"sku": "1", "name": "Cups; set of 4", "note": "two\nlines"}),
        (2, {"sku": "2", "name": "Mug", "note": 'say "hi"'}),
    ]


def test_latin1_feeds_are_read_with_their_declared_encoding(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_bytes("sku,name\n1,Crème brûlée set\n".encode("latin-1"))
    rows = _rows(feed, "csv", parse_mapping('encoding = "latin-1"'))
    assert rows == [(1, {"sku": "1", "name": "Crème brûlée set"})]


def test_a_utf16_bom_wins_over_the_declared_encoding(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_bytes("sku,name\n1,Tasse\n".encode("utf-16"))
    assert _rows(feed, "csv") == [(1, {"sku": "1", "name": "Tasse"})]


def test_ragged_csv_rows_are_row_errors_not_file_errors(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text("sku,name\n1,Mug\n2,Bowl,extra\n3\n4,Plate\n")
    rows = _rows(feed, "csv")
    assert rows[0] == (1, {"sku": "1", "name": "Mug"})
    assert rows[1] == (2, RowError("row", "ragged_row", 3, "the row has 3 fields, the header 2"))
    assert rows[2] == (3, RowError("row", "ragged_row", 1, "the row has 1 fields, the header 2"))
    assert rows[3] == (4, {"sku": "4", "name": "Plate"})


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (b"sku,name\n1,Mug\n2,Caf\xe9\n", "IMPORT_FILE_ENCODING", "not valid utf-8"),
        (b'sku,name\n1,"Mug\n', "IMPORT_FILE_MALFORMED", "data row 1"),
        (b"sku,name\n1,a\x00b\n", "IMPORT_FILE_MALFORMED", "NUL"),
        (b"sku,,name\n", "IMPORT_FILE_MALFORMED", "blank column"),
        (b"sku,sku\n", "IMPORT_FILE_MALFORMED", "twice"),
    ],
)
def test_broken_csv_files_are_refused(
    tmp_path: Path, content: bytes, code: str, message: str
) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_bytes(content)
    with pytest.raises(FileUnreadable) as refused:
        _rows(feed, "csv")
    assert refused.value.code == code
    assert message in refused.value.message


def test_json_arrays_top_level_or_nested(tmp_path: Path) -> None:
    top = tmp_path / "top.json"
    top.write_text('[{"sku": "1", "price": 12.50}, 7, {"sku": "2"}]')
    rows = _rows(top, "json")
    assert rows[0] == (1, {"sku": "1", "price": pytest.approx(12.5)})
    assert rows[1] == (
        2,
        RowError("row", "not_an_object", "7", "each product must be a JSON object"),
    )
    assert rows[2] == (3, {"sku": "2"})
    nested = tmp_path / "nested.json"
    nested.write_text('{"meta": {}, "data": {"items": [{"sku": "9"}]}}')
    assert _rows(nested, "json", parse_mapping('records = "data.items"')) == [(1, {"sku": "9"})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"sku": "1"}, {"sku": ', "invalid JSON after product 1"),
        ('{"sku": "1"}', "not an array"),
        ("", "invalid JSON"),
        ('[{"sku": "1"}] trailing', "invalid JSON"),
    ],
)
def test_broken_json_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text(content)
    with pytest.raises(FileUnreadable, match=message):
        _rows(feed, "json")


def test_ndjson_skips_blank_lines_and_refuses_a_broken_one(tmp_path: Path) -> None:
    feed = tmp_path / "feed.ndjson"
    feed.write_text('{"sku": "1"}\n\n{"sku": "2"}\n')
    assert _rows(feed, "ndjson") == [(1, {"sku": "1"}), (2, {"sku": "2"})]
    feed.write_text('{"sku": "1"}\n{"sku": \n')
    with pytest.raises(FileUnreadable, match="line 2"):
        _rows(feed, "ndjson")


def test_the_format_comes_from_the_mapping_or_the_file_name() -> None:
    assert format_of("feed.CSV", MappingSpec()) == "csv"
    assert format_of("feed.jsonl", MappingSpec()) == "ndjson"
    assert format_of("feed.dat", parse_mapping('format = "json"')) == "json"
    with pytest.raises(FileUnreadable, match="cannot tell the format"):
        format_of("feed.xlsx", MappingSpec())


@pytest.mark.parametrize("chunk_edge", [0, 65_530])
def test_a_json_integer_longer_than_python_converts_is_refused(
    tmp_path: Path, chunk_edge: int
) -> None:
    # ijson's C backend crashes the process (SIGSEGV) on an integer of more than
    # sys.get_int_max_str_digits() digits: the reader must refuse it before ijson sees it,
    # wherever the digits fall across the reads.
    feed = tmp_path / "feed.json"
    padding = "x" * chunk_edge
    feed.write_text(f'[{{"sku": "1", "pad": "{padding}", "n": {"9" * 5000}}}]')
    with pytest.raises(FileUnreadable, match="digits"):
        _rows(feed, "json")


def test_the_guard_refuses_any_such_run_of_digits_and_nothing_shorter(tmp_path: Path) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text('[{"sku": "1", "code": "' + "7" * 5000 + '"}]')
    with pytest.raises(FileUnreadable):  # the guard does not parse: a string's digits count
        _rows(feed, "json")
    feed.write_text('[{"sku": 12345678901234567890123, "price": 1.5}]')
    assert _rows(feed, "json")[0][1]["sku"] == 12345678901234567890123  # type: ignore[index]
