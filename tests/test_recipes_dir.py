"""Every recipe we ship validates, and says what it does, needs and costs in its opening comment."""

import pytest

from conftest import ROOT
from loopkit.prepare import validate_recipe
from loopkit.recipe import load_recipe

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {"logic.yaml", "math.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path):
    data, unchecked = validate_recipe(load_recipe(path))
    # only what needs the outside world (the hub, an API key) may go unchecked here
    assert all("needs the hub" in reason or "api_key_env" in reason for reason in unchecked), unchecked
    assert data is not None or any("needs the hub" in reason for reason in unchecked)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_opens_with_what_it_does_needs_and_takes(path):
    header = path.read_text().split("\nname:")[0]
    assert header.startswith(f"# {path.name} - ")
    assert "# Needs:" in header and "# Takes:" in header
