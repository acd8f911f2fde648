"""Reading recipes: load (YAML, extends, overrides) -> validate (schema and rules) -> a typed Recipe."""
from forge.recipe.errors import RecipeError, RecipeIssue
from forge.recipe.schema import Recipe
from forge.recipe.validate import Resolved, resolve

__all__ = ["Recipe", "RecipeError", "RecipeIssue", "Resolved", "resolve"]
