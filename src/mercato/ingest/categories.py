"""Category mapping: a feed names categories by text; the catalog knows them by id.

A label is first looked up in the mapping's aliases, then matched by path ("Home > Kitchen",
names from the root, case-insensitive) or by name (a unique category of that name anywhere
in the tree). What is not found is created through the catalog's own use case (same rules,
same events) when the mapping says `unknown = "create"`, or rejected.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg
from pydantic import ValidationError

from mercato.catalog import CategoryCreate, create_category, list_categories
from mercato.core.errors import DomainError
from mercato.ingest.mapping import CategorySpec

MAX_CATEGORY_LABELS = 10_000


@dataclass(frozen=True, slots=True)
class Unresolved:
    rule: str
    message: str


@dataclass(slots=True)
class Resolution:
    ids: dict[str, uuid.UUID | None] = field(default_factory=dict)  # None: created on load
    refused: dict[str, Unresolved] = field(default_factory=dict)
    created: int = 0


class _Tree:
    def __init__(self, rows: list[asyncpg.Record]) -> None:
        self.children: dict[tuple[uuid.UUID | None, str], uuid.UUID] = {}
        self.by_name: dict[str, list[uuid.UUID]] = {}
        self.planned: set[uuid.UUID] = set()  # a dry run's categories that would be made
        for row in rows:
            self.add(row["id"], row["parent_id"], row["name"])

    def add(self, category_id: uuid.UUID, parent_id: uuid.UUID | None, name: str) -> None:
        self.children[(parent_id, name.casefold())] = category_id
        self.by_name.setdefault(name.casefold(), []).append(category_id)


async def resolve(
    db: asyncpg.Connection, labels: list[str], spec: CategorySpec, *, create: bool
) -> Resolution:
    """Map each label to a category id. With `create` False (a dry run) nothing is written:
    labels that would be created map to None and are counted."""
    tree = _Tree(await list_categories(db, limit=MAX_CATEGORY_LABELS * 10))
    resolution = Resolution()
    for label in sorted(labels):
        target = spec.aliases.get(label, label)
        if spec.match == "name":
            await _by_name(db, tree, label, target.strip(), spec, create, resolution)
        else:
            names = [part.strip() for part in target.split(spec.separator)]
            await _by_path(db, tree, label, names, spec, create, resolution)
    return resolution


async def _by_name(
    db: asyncpg.Connection,
    tree: _Tree,
    label: str,
    name: str,
    spec: CategorySpec,
    create: bool,
    resolution: Resolution,
) -> None:
    found = tree.by_name.get(name.casefold(), [])
    if len(found) == 1:
        resolution.ids[label] = found[0]
    elif len(found) > 1:
        resolution.refused[label] = Unresolved(
            "ambiguous_category", f"{len(found)} categories are named {name!r}: map it by path"
        )
    else:
        await _by_path(db, tree, label, [name], spec, create, resolution)


async def _by_path(
    db: asyncpg.Connection,
    tree: _Tree,
    label: str,
    names: list[str],
    spec: CategorySpec,
    create: bool,
    resolution: Resolution,
) -> None:
    if not all(names):
        resolution.refused[label] = Unresolved("category_name_invalid", "an empty category name")
        return
    parent: uuid.UUID | None = None
    for depth, name in enumerate(names):
        found = tree.children.get((parent, name.casefold()))
        if found is not None:
            parent = found
            continue
        if spec.unknown == "reject":
            path = spec.separator.join(names[: depth + 1])
            resolution.refused[label] = Unresolved(
                "unknown_category", f"no category {path!r} (the mapping rejects unknown ones)"
            )
            return
        if not create:
            # A dry run: remember it as if made, so that later labels under it count it once.
            planned = uuid.uuid4()
            tree.add(planned, parent, name)
            tree.planned.add(planned)
            resolution.created += 1
            parent = planned
            continue
        refused = await _create(db, tree, name, parent, resolution)
        if refused is not None:
            resolution.refused[label] = refused
            return
        parent = tree.children[(parent, name.casefold())]
    resolution.ids[label] = None if parent in tree.planned else parent


async def _create(
    db: asyncpg.Connection,
    tree: _Tree,
    name: str,
    parent: uuid.UUID | None,
    resolution: Resolution,
) -> Unresolved | None:
    try:
        data = CategoryCreate(name=name, parent_id=parent)
    except ValidationError as error:
        return Unresolved("category_name_invalid", error.errors()[0]["msg"])
    try:
        # A savepoint: a refused category must not undo the categories made before it.
        async with db.transaction():
            row = await create_category(db, data)
    except DomainError as error:
        return Unresolved(error.code.lower(), error.detail_message)
    tree.add(row["id"], parent, row["name"])
    resolution.created += 1
    return None
