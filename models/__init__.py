"""Recipes: tested QuantConfigs per model, shipped with the package and found by name (`--recipe smollm2-135m`).

Each JSON file holds {"model": hub id or null, "task": ..., "config": {QuantConfig fields}, "notes": ...}.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from svdq_edge.config import ConfigError


def recipe_names() -> list[str]:
    """The names of the recipes shipped with the package (file names without .json)."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".json"))


def read_recipe(name_or_path: str | Path) -> dict:
    """A recipe by name (one of recipe_names()) or from a JSON file; ConfigError when neither, or malformed."""
    path = Path(name_or_path)
    if path.is_file():
        text_of = path.read_text
    elif str(name_or_path) in recipe_names():
        text_of = resources.files(__name__).joinpath(f"{name_or_path}.json").read_text
    else:
        raise ConfigError(f"{name_or_path}: no such recipe file or name (names: {', '.join(recipe_names())})")
    try:
        recipe = json.loads(text_of())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{name_or_path}: not a readable JSON recipe ({e})") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("config"), dict):
        raise ConfigError(f"{name_or_path}: a recipe needs a \"config\" object")
    return recipe
