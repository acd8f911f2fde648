"""One process of a multi-process run: `accelerate launch -m forge.train.worker RECIPE [key=value ...]`.

It resolves and compiles the recipe exactly as `forge run` did (so every rank has the same plan), and
runs it on its rank, resuming from whatever complete checkpoint the launcher left in the run directory.
"""
from __future__ import annotations

import sys

from forge.errors import ForgeError
from forge.recipe.errors import RecipeError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m forge.train.worker RECIPE [key=value ...]", file=sys.stderr)
        return 2
    from forge.console import quiet_libraries
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    quiet_libraries()  # as `forge run` did in the launcher
    from forge.train.run import exit_code, run_recipe

    try:
        resolved = resolve(args[0], args[1:])
        summary = run_recipe(resolved, compile_plan(resolved.recipe), resume="prepared")
    except RecipeError as e:
        print("\n".join(issue.format() for issue in e.issues), file=sys.stderr)
        return 2
    except ForgeError as e:
        print(f"forge: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
