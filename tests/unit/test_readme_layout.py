"""The README's Layout names every module of the package, so a newcomer finds each one's job there."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_the_readme_layout_names_every_module():
    block = layout_block()
    modules = [p for p in (ROOT / "stacube").rglob("*.py") if p.name != "__init__.py"]
    assert len(modules) > 50
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in block and p.stem + "/" not in block]
    folders = [str(p.relative_to(ROOT)) for p in (ROOT / "stacube").rglob("__init__.py")
               if p.parent.name != "stacube" and p.parent.name + "/" not in block]
    assert not missing and not folders, f"the README's Layout does not name {missing + folders}"
