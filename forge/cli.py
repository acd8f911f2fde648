"""The `forge` command: parse arguments, call one function per verb, map errors to exit codes.

Exit codes: 0 success, 1 a run that failed, 2 bad input (recipe, data, paths: one line per problem),
130/143 interrupted. Verbs import the heavy stack only when they need it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from forge.recipe.errors import RecipeError, RecipeIssue

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _print_issues(issues: list[RecipeIssue], as_json: bool) -> None:
    if as_json:
        print(json.dumps([i.to_dict() for i in issues], indent=2))
    for issue in issues:
        print(issue.format(), file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from forge.recipe.validate import resolve

    issues: list[RecipeIssue] = []
    for path in args.recipes:
        try:
            resolve(path, args.override or [])
        except RecipeError as e:
            issues += [i for i in e.issues if i not in issues]  # a parent's problem is reported once
        else:
            if not args.json:
                print(f"{path}: ok")
    _print_issues(issues, args.json)
    return EXIT_BAD_INPUT if issues else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from forge.plan import compile_plan
    from forge.plan_report import format_plan, plan_json
    from forge.recipe.validate import resolve

    resolved = resolve(args.recipe, args.overrides)
    plan = compile_plan(resolved.recipe)
    print(json.dumps(plan_json(resolved, plan), indent=2) if args.json else format_plan(resolved, plan))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from forge.execute import execute

    return execute(args.recipe, args.overrides, resume="always" if args.resume else "never" if args.fresh else "auto")


def cmd_steps(args: argparse.Namespace) -> int:
    from forge.data.steps import STEPS

    for entry in STEPS.entries():
        params = ", ".join(f"{name}={field.default!r}" for name, field in entry.params.model_fields.items())
        print(f"{entry.name:<22} {entry.doc}")
        if params:
            print(f"{'':<22}   args: {params}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from forge.recipe.reference import write_generated

    if args.write:
        for path in write_generated(Path.cwd()):
            print(f"wrote {path}")
        return EXIT_OK
    from forge.recipe.schema import recipe_json_schema

    print(json.dumps(recipe_json_schema(), indent=2))
    return EXIT_OK


def cmd_data_preview(args: argparse.Namespace) -> int:
    from forge.execute import data_preview

    return data_preview(args.recipe, args.overrides, args.n, args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forge", description="Fine-tune language models on scientific papers "
                                                               "from one recipe.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("validate", help="check recipes; every problem as FILE:LINE:COL: path: message")
    p.add_argument("recipes", nargs="+", metavar="RECIPE")
    p.add_argument("--set", dest="override", action="append", metavar="KEY=VALUE", help="override (repeatable)")
    p.add_argument("--json", action="store_true", help="print the problems as a JSON list")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="show the resolved recipe, where each value came from, and the compiled plan")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="train: validate, plan, then run TRL's SFTTrainer")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="resume from the last checkpoint (error if none)")
    group.add_argument("--fresh", action="store_true", help="start over; an existing run directory is moved aside")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("steps", help="list the preprocessing steps and their arguments")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("schema", help="print the recipe JSON Schema (--write: regenerate the checked-in files)")
    p.add_argument("--write", action="store_true")
    p.set_defaults(func=cmd_schema)

    data = sub.add_parser("data", help="inspect what the data section produces")
    data_sub = data.add_subparsers(dest="data_verb", required=True, metavar="VERB")
    p = data_sub.add_parser("preview", help="a few processed examples and corpus statistics")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("-n", type=int, default=3, help="examples to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except RecipeError as e:
        _print_issues(e.issues, getattr(args, "json", False))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("forge: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # errors Forge knows carry a one-line message and an exit code
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        print(f"forge: {e}", file=sys.stderr)
        return int(code)
