from __future__ import annotations

import uuid

import pytest

from mercato.catalog.rules import (
    child_path,
    depth_of,
    gtin_is_valid,
    is_within,
    prefix_tsquery,
    slugify,
)


@pytest.mark.parametrize("gtin", ["4006381333931", "96385074", "036000291452", "10036000291459"])
def test_valid_gtins_pass(gtin: str) -> None:
    assert gtin_is_valid(gtin)


@pytest.mark.parametrize(
    "gtin", ["4006381333932", "1234567", "abcdefghijklm", "", "400638133393100"]
)
def test_invalid_gtins_fail(gtin: str) -> None:
    assert not gtin_is_valid(gtin)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wirel head", "wirel:* & head:*"),
        ("Lamp", "lamp:*"),
        ("a lamp", "a & lamp:*"),
        ("'); DROP TABLE x; --", "drop:* & table:* & x"),
        ("lamp & | ! ( ) :* <->", "lamp:*"),
        ("!!!", None),
        ("   ", None),
        ("__", None),
    ],
)
def test_prefix_tsquery_keeps_only_words(text: str, expected: str | None) -> None:
    assert prefix_tsquery(text) == expected


def test_prefix_tsquery_caps_the_number_of_terms() -> None:
    query = prefix_tsquery(" ".join(f"w{n}" for n in range(50)))
    assert query is not None
    assert query.count("&") == 7


def test_slugify_folds_accents_and_punctuation() -> None:
    assert slugify("  Garden & Outdoor Café!  ") == "garden-outdoor-cafe"
    assert slugify("???") == ""


def test_paths_nest_and_contain_their_descendants() -> None:
    root, child = uuid.uuid4(), uuid.uuid4()
    root_path = child_path(None, root)
    leaf_path = child_path(root_path, child)
    assert (depth_of(root_path), depth_of(leaf_path)) == (0, 1)
    assert is_within(leaf_path, root_path)
    assert is_within(root_path, root_path)
    assert not is_within(root_path, leaf_path)
