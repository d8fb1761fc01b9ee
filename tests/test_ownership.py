"""Each Mongo collection has one owning lib module: only it names the collection, declares its indexes and
reads or writes it; every other module calls the owner's functions.

Read from the source (lib/**/*.py), so a new module that reaches into someone else's collection fails here
before it can drift from the owner's rules (two style resolvers that disagreed came from exactly that).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "lib"


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(LIB.parent)): ast.parse(p.read_text(), str(p)) for p in sorted(LIB.rglob("*.py"))}


def _is_db_call(node: ast.AST, name: str) -> bool:
    """db.<name>(...) (how every module reaches lib.db)."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "db")


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "literal" or NAME = db.declare("literal", ...)."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if _is_db_call(value, "declare") and value.args:
                value = value.args[0]
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found[node.targets[0].id] = value.value
    return found


def _collections_reached(path: str, tree: ast.Module) -> tuple[set[str], list[str]]:
    """(collection names this module declares or opens, db.collection calls whose name is not its own)."""
    constants = _constants(tree)
    names: set[str] = set()
    foreign: list[str] = []
    for node in ast.walk(tree):
        if _is_db_call(node, "declare") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        if not _is_db_call(node, "collection"):
            continue
        arg = node.args[0] if node.args else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.add(arg.value)
        elif isinstance(arg, ast.Name) and arg.id in constants:
            names.add(constants[arg.id])
        else:  # another module's constant, a parameter, an expression: not a collection this module owns
            foreign.append(f"{path}:{node.lineno} db.collection({ast.unparse(arg) if arg else ''})")
    return names, foreign


def test_each_collection_is_reached_from_exactly_one_lib_module():
    modules = _modules()
    owners: dict[str, set[str]] = defaultdict(set)
    foreign: list[str] = []
    for path, tree in modules.items():
        if path == "lib/db.py":
            continue
        names, calls = _collections_reached(path, tree)
        for name in names:
            owners[name].add(path)
        foreign += calls
    assert {"users", "uploads", "interiors", "styles", "room_types", "products"} <= owners.keys()
    shared = {name: sorted(paths) for name, paths in owners.items() if len(paths) > 1}
    assert not shared, f"collections opened by more than one module: {shared}"
    assert not foreign, f"db.collection with a name the module does not own: {foreign}"

    # lib.db itself names no collection: each owner declares its own indexes
    db_literals = {n.value for n in ast.walk(modules["lib/db.py"]) if isinstance(n, ast.Constant)}
    assert not db_literals & owners.keys(), f"lib/db.py names collections: {sorted(db_literals & owners.keys())}"

    # nobody reaches the database past db.collection (db.database()["x"] would bypass the owner)
    bypass = [f"{path}:{n.lineno}" for path, tree in modules.items() if path != "lib/db.py"
              for n in ast.walk(tree) if _is_db_call(n, "database") or _is_db_call(n, "client")]
    assert not bypass, f"database reached without db.collection: {bypass}"


def test_every_declared_owner_is_prepared_by_ensure_all_indexes():
    """A fresh database gets every owner's indexes from one call (scripts/seed.py, tests)."""
    from lib import db

    declaring = {path.removesuffix(".py").replace("/", ".") for path, tree in _modules().items()
                 if any(_is_db_call(n, "declare") for n in ast.walk(tree))}
    assert declaring <= set(db.OWNERS), f"declare collections but are not in db.OWNERS: {declaring - set(db.OWNERS)}"


def test_ensure_all_indexes_gives_a_fresh_database_every_owners_indexes(stack):
    from lib import db

    db.ensure_all_indexes()
    database = db.database()
    expected = {"users": "email_unique", "refresh_tokens": "expires_ttl", "throttles": "expires_ttl",
                "uploads": "user_created", "interiors": "idempotency", "products": "label_price",
                "ar_models": "label", "notifications": "user_read", "processed_events": "expires_ttl"}
    for collection, index in expected.items():
        assert index in database[collection].index_information(), collection
