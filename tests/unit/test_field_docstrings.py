"""Every dataclass and NamedTuple field in the package says what it holds (a docstring right after it,
as odc-geo's overlap.py does), so a reader never has to guess a field's unit or convention."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stacube"


def _undocumented_fields() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            record = any("dataclass" in ast.unparse(d) for d in node.decorator_list) or \
                any(ast.unparse(b).endswith("NamedTuple") for b in node.bases)
            if not record:
                continue
            for stmt, after in zip(node.body, [*node.body[1:], None], strict=True):
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and not (
                        isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                        and isinstance(after.value.value, str)):
                    found.setdefault(f"{path.relative_to(PACKAGE)}:{node.name}", []).append(stmt.target.id)
    return found


def test_every_dataclass_field_has_a_docstring():
    assert _undocumented_fields() == {}
