"""The `forge` parser against the README's table of verbs: every documented verb, sub-verb and option has its
parser, every verb has help text and a handler, and no verb goes undocumented."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import forge.cli
from forge.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_usages() -> list[str]:
    """The `forge ...` usage of each row of the README's verb table, with Markdown's escaped bars unescaped."""
    section = README.read_text(encoding="utf-8").split("## The verbs", 1)[1].split("\n## ", 1)[0]
    return [m.replace("\\|", "|") for m in re.findall(r"^\| `forge ([^`]+)` \|", section, flags=re.M)]


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def leaves(parser: argparse.ArgumentParser,
           path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every parser that runs a verb, by its words (("runs", "list"), ("steps",), ...)."""
    sub = subcommands(parser)
    if sub is None:
        return {path: parser}
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for name, child in sub.choices.items():
        found.update(leaves(child, path + (name,)))
    return found


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """(verb words) -> the options its README usage names; `runs list|show` stands for each sub-verb."""
    parser = build_parser()
    commands: dict[tuple[str, ...], set[str]] = {}
    for usage in documented_usages():
        words = usage.split()
        if words[0].startswith("-"):
            continue  # `forge --version`: no verb
        options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage))
        verb = subcommands(parser).choices.get(words[0])
        sub = subcommands(verb) if verb is not None else None
        if sub is not None:
            for name in words[1].split("|"):
                commands[(words[0], name)] = options
        else:
            commands[(words[0],)] = options
    return commands


def test_the_readme_table_is_read() -> None:
    commands = documented_commands()
    assert ("validate",) in commands and ("runs", "sync") in commands and ("data", "preview") in commands
    assert "--fresh" in commands[("run",)] and "-n" in commands[("data", "preview")]


def test_every_documented_verb_and_option_has_its_parser() -> None:
    verbs = leaves(build_parser())
    for words, options in documented_commands().items():
        assert words in verbs, f"`forge {' '.join(words)}` is in README.md but the parser has no such verb"
        known = {s for action in verbs[words]._actions for s in action.option_strings}
        assert options <= known, f"`forge {' '.join(words)}` lacks {sorted(options - known)}"


def test_every_verb_is_documented_and_has_help_and_a_handler() -> None:
    parser = build_parser()
    documented = documented_commands()
    for words, verb in leaves(parser).items():
        assert words in documented, f"`forge {' '.join(words)}` is missing from README.md's table of verbs"
        handler = verb.get_default("func")
        assert callable(handler) and getattr(forge.cli, handler.__name__) is handler, words
    # help text on each verb and group, as `forge --help` and `forge runs --help` list them
    stack = [parser]
    while stack:
        sub = subcommands(stack.pop())
        if sub is not None:
            helps = {a.dest: a.help for a in sub._choices_actions}
            assert set(helps) == set(sub.choices) and all(helps.values()), helps
            stack += sub.choices.values()


def test_the_version_flag_is_documented_and_present() -> None:
    assert "--version" in documented_usages()
    assert "--version" in build_parser()._option_string_actions
