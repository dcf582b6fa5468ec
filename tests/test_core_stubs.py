"""``python/cexarb/_core.pyi`` and the built extension agree (STYLE §2: every stub name exists).

Top-level classes, functions and annotated constants of the stub must exist in ``cexarb._core``;
every method, property and annotated attribute of a stub class must exist on the real class.
Plain assignments at the top of the stub (``Side = Literal[...]``, ``Levels = ...``) are typing
aliases for the stub only and are not looked up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cexarb import _core

STUB = Path(__file__).resolve().parents[1] / "python" / "cexarb" / "_core.pyi"


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def _top_level_names() -> list[tuple[str, str]]:
    names: list[tuple[str, str]] = []
    for node in _stub_tree().body:
        if isinstance(node, ast.ClassDef):
            names.append(("class", node.name))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(("function", node.name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(("constant", node.target.id))
    return names


def _class_members() -> list[tuple[str, str]]:
    members: list[tuple[str, str]] = []
    for node in _stub_tree().body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                members.append((node.name, item.name))
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                members.append((node.name, item.target.id))
    return members


def test_stub_parses_and_is_not_empty() -> None:
    kinds = {kind for kind, _ in _top_level_names()}
    assert kinds == {"class", "function", "constant"}
    assert len(_class_members()) > 50


@pytest.mark.parametrize(("kind", "name"), _top_level_names(), ids=lambda v: str(v))
def test_top_level_name_exists(kind: str, name: str) -> None:
    assert hasattr(_core, name), f"{kind} {name} is in _core.pyi but not in cexarb._core"
    obj = getattr(_core, name)
    if kind == "class":
        assert isinstance(obj, type), f"{name} should be a class, got {type(obj).__name__}"
    elif kind == "function":
        assert callable(obj) and not isinstance(obj, type), f"{name} should be a function"
    else:
        assert isinstance(obj, int), f"constant {name} should be an int, got {obj!r}"


@pytest.mark.parametrize(("cls", "member"), _class_members(), ids=lambda v: str(v))
def test_class_member_exists(cls: str, member: str) -> None:
    real = getattr(_core, cls)
    assert hasattr(real, member), f"{cls}.{member} is in _core.pyi but not on cexarb._core.{cls}"


def test_result_codes_are_distinct() -> None:
    codes = [_core.APPLIED, _core.STALE, _core.GAP, _core.NOT_SYNCED, _core.CROSSED]
    assert codes == [0, 1, 2, 3, 4]


def test_exception_hierarchy() -> None:
    assert issubclass(_core.CexarbError, ValueError)
    for name in ("BookInputError", "SequenceGapError", "IllegalTransitionError", "PricingError"):
        assert issubclass(getattr(_core, name), _core.CexarbError), name
