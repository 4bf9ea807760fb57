"""The generated parts of the docs match the code they are generated from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator(name: str = "gen_api_doc"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_doc_generated_sections_are_current():
    gen = _generator()
    current = gen.DOC.read_text()
    assert gen.render(current) == current, (
        "docs/api.md is out of date with aetherd/http/routes.py or aether/errors.py: "
        "run `python scripts/gen_api_doc.py`"
    )


def test_api_doc_lists_every_route():
    from aetherd.http.routes import ROUTES

    text = (ROOT / "docs" / "api.md").read_text()
    for route in ROUTES:
        assert f"| {route.method} | `{route.path}` |" in text, (route.method, route.path)


def test_cli_doc_reference_is_current():
    gen = _generator("gen_cli_doc")
    current = gen.DOC.read_text()
    assert gen.rendered_doc(current) == current, (
        "docs/cli.md is out of date with the command tree: run `python scripts/gen_cli_doc.py`")


def test_cli_doc_covers_every_command():
    from aether.cli.main import COMMANDS

    text = (ROOT / "docs" / "cli.md").read_text()
    for name in COMMANDS:
        assert f"`aether {name}`" in text, name
