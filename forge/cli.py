"""The `forge` command: parse arguments, call one function per verb, map errors to exit codes.

Exit codes: 0 success, 1 a run that failed or a quality gate that failed, 2 bad input (recipe, data, paths:
one line per problem), 130/143 interrupted. Verbs import the heavy stack only when they need it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from forge import __version__
from forge.console import quiet_libraries
from forge.errors import doc_anchor, see_docs
from forge.recipe.errors import RecipeError, RecipeIssue, one_line

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
            resolved = resolve(path, args.override or [])
        except RecipeError as e:
            issues += [i for i in e.issues if i not in issues]  # a parent's problem is reported once
        else:
            from forge.recipe.data_paths import missing_data_paths

            missing = [i for i in missing_data_paths(resolved) if i not in issues]
            issues += missing
            if missing:
                continue
            if not args.json:
                print(f"{path}: ok")
                for note in resolved.notes:  # paths that leave their recipe's folder through a symlink
                    print(note.format())
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


def cmd_eval(args: argparse.Namespace) -> int:
    from forge.evaluate.run import eval_command

    return eval_command(args.target, args.compare, overrides=args.overrides, as_json=args.json)


def cmd_serve(args: argparse.Namespace) -> int:
    from forge.serve.server import serve

    return serve(args.target, args.overrides, host=args.host, port=args.port, log_level=args.log_level)


def cmd_export(args: argparse.Namespace) -> int:
    from forge.export.command import export_command

    return export_command(args.run_dir, args.format, dtype=args.dtype, out=args.out, register=args.register)


def cmd_steps(args: argparse.Namespace) -> int:
    from forge.data.steps import STEPS

    for entry in STEPS.entries():
        params = ", ".join(f"{name}={field.get_default(call_default_factory=True)!r}"
                           for name, field in entry.params.model_fields.items())
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


def cmd_runs(args: argparse.Namespace) -> int:
    if args.runs_verb == "list":
        from forge.track.runs import list_command

        return list_command(args.uri, args.experiment, args.json)
    if args.runs_verb == "show":
        from forge.track.runs import show_command

        return show_command(args.uri, args.run, args.json)
    if args.runs_verb == "compare":
        from forge.track.compare import compare_command

        return compare_command(args.uri, args.runs, args.out, log=not args.no_log, as_json=args.json)
    from forge.track.runs import sync_command

    return sync_command(args.run_dir)


def cmd_score(args: argparse.Namespace) -> int:
    from forge.evaluate.bc2gm_score import score_files, score_text

    score = score_files(Path(args.gold_dir), Path(args.predictions))
    print(json.dumps(score.to_dict(), indent=2) if args.json else score_text(score, args.gold_dir, args.predictions))
    return EXIT_OK


def cmd_data_preview(args: argparse.Namespace) -> int:
    from forge.execute import data_preview

    return data_preview(args.recipe, args.overrides, args.n, args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forge", description="Fine-tune language models on scientific papers "
                                                               "from one recipe.")
    parser.add_argument("--version", action="version", version=f"forge {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add_verbs in (_add_recipe_verbs, _add_model_verbs, _add_reference_verbs, _add_data_verbs, _add_score_verbs,
                      _add_runs_verbs):
        add_verbs(sub)
    return parser


def _add_recipe_verbs(sub: argparse._SubParsersAction) -> None:
    """validate, plan, run: the verbs that read a recipe and train from it."""
    p = sub.add_parser("validate", help="check recipes; every problem as FILE:LINE:COL: path: message")
    p.add_argument("recipes", nargs="+", metavar="RECIPE")
    p.add_argument("--set", dest="override", action="append", metavar="KEY=VALUE", help="override (repeatable)")
    p.add_argument("--json", action="store_true", help="print the problems as a JSON list")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="show the resolved recipe, where each value came from, and the compiled plan")
    p.add_argument("recipe", metavar="RECIPE")
    # default=[] on every optional KEY=VALUE list: without one, argparse names it among the missing arguments
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="train: validate, plan, then run TRL's SFTTrainer")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="resume from the last checkpoint (error if none)")
    group.add_argument("--fresh", action="store_true", help="start over; an existing run directory is moved aside")
    p.set_defaults(func=cmd_run)


def _add_model_verbs(sub: argparse._SubParsersAction) -> None:
    """eval, serve, export: the verbs that use a trained run."""
    p = sub.add_parser("eval", help="evaluate a finished run against a baseline; exit 1 when a quality gate fails")
    p.add_argument("target", metavar="RECIPE|RUN_DIR", help="a run directory written by forge run, or its recipe")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="recipe overrides, e.g. evaluation.max_examples=20")
    p.add_argument("--compare", metavar="OTHER", default=None,
                   help="baseline: base, a run directory, an adapter folder or none (default: evaluation.compare_with)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="serve a trained run over HTTP (OpenAI-compatible chat, generation, analysis)")
    p.add_argument("target", metavar="RUN_DIR|RECIPE", help="a run directory written by forge run, or its recipe")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="recipe overrides, e.g. serving.max_batch_size=16")
    p.add_argument("--host", default=None, help="interface to listen on (default: serving.host)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: serving.port)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="LitServe and uvicorn logging (info also logs every request)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="write a trained run as an adapter, a merged model folder or a GGUF file, "
                                      "with a model card")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by forge run")
    p.add_argument("--format", required=True, choices=["adapter", "merged", "gguf"],
                   help="adapter: the PEFT folder; merged: a from_pretrained folder; gguf: one file for llama.cpp")
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16", "f32", "q8_0"],
                   help="weights of merged or gguf (q8_0: gguf only); default: the base model's (gguf: fp16 "
                        "unless the base is bf16)")
    p.add_argument("--out", metavar="DIR", default=None, help="a new folder (default: RUN_DIR/export/FORMAT)")
    p.add_argument("--register", metavar="NAME", default=None,
                   help="register the export as a new version of this MLflow registered model")
    p.set_defaults(func=cmd_export)


def _add_reference_verbs(sub: argparse._SubParsersAction) -> None:
    """steps, schema: what a recipe may say."""
    p = sub.add_parser("steps", help="list the preprocessing steps and their arguments")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("schema", help="print the recipe JSON Schema (--write: regenerate the checked-in files)")
    p.add_argument("--write", action="store_true")
    p.set_defaults(func=cmd_schema)


def _add_data_verbs(sub: argparse._SubParsersAction) -> None:
    """data preview."""
    data = sub.add_parser("data", help="inspect what the data section produces")
    data_sub = data.add_subparsers(dest="data_verb", required=True, metavar="VERB")
    p = data_sub.add_parser("preview", help="a few processed examples and corpus statistics")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("-n", type=int, default=3, help="examples to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_preview)


def _add_score_verbs(sub: argparse._SubParsersAction) -> None:
    """score BENCHMARK: official scores of any system's predictions."""
    score = sub.add_parser("score", help="score a prediction file from any system with a benchmark's official rules")
    score_sub = score.add_subparsers(dest="score_verb", required=True, metavar="BENCHMARK")
    p = score_sub.add_parser("bc2gm", help="BioCreative II gene mention: TP, FP, FN, precision, recall, F1 "
                                           "(alt_eval.perl's rules)")
    p.add_argument("gold_dir", metavar="GOLD_DIR", help="folder with the sentence file, GENE.eval and ALTGENE.eval")
    p.add_argument("predictions", metavar="PRED_FILE", help="predicted mentions, one 'ID|start end|text' a line")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)


def _add_runs_verbs(sub: argparse._SubParsersAction) -> None:
    """runs list, show, compare, sync: the tracked runs."""
    runs = sub.add_parser("runs", help="find, show and compare tracked runs (MLflow)")
    runs_sub = runs.add_subparsers(dest="runs_verb", required=True, metavar="VERB")
    store_help = "tracking URI, or a folder holding mlflow.db (default: $MLFLOW_TRACKING_URI, else runs/mlflow.db)"
    p = runs_sub.add_parser("list", help="the runs of the store, newest first")
    p.add_argument("--experiment", metavar="NAME", default=None, help="only this experiment")
    p.add_argument("--uri", metavar="URI|DIR", default=None, help=store_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)
    p = runs_sub.add_parser("show", help="one run's recipe, environment and results")
    p.add_argument("run", metavar="RUN", help="run id, a unique prefix of it, or the run name")
    p.add_argument("--uri", metavar="URI|DIR", default=None, help=store_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)
    p = runs_sub.add_parser("compare", help="differing recipe values and metrics side by side; loss and eval plots")
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run ids (or unique prefixes, or run names)")
    p.add_argument("--uri", metavar="URI|DIR", default=None, help=store_help)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the PNG plots and comparison.md (default: comparisons/ beside the store)")
    p.add_argument("--no-log", action="store_true", help="do not log the comparison to the runs in MLflow")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)
    p = runs_sub.add_parser("sync", help="send what a run kept on disk while its tracking server was away")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=cmd_runs)

def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
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
        print(one_line(f"forge: {e}") + see_docs(doc_anchor(e)), file=sys.stderr)
        return int(code)
