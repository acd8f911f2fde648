"""Helpers for the hardening tests: run `forge validate` in-process with a time bound and check what it
printed against the contract (exit 0 or 2; on 2 every stderr line is `FILE:LINE:COL: ...` or `forge: ...`)."""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*REPO.glob("recipes/*.yaml"), *REPO.glob("recipes/base/*.yaml")])
ISSUE_LINE = re.compile(r"^.+:\d+:\d+: \S.*$")
FORGE_LINE = re.compile(r"^forge: \S.*$")
SECONDS_PER_EXAMPLE = 10


def fuzz_examples(default: int) -> int:
    """Examples per property: `default` in CI, FORGE_FUZZ_EXAMPLES for a long run."""
    return int(os.environ.get("FORGE_FUZZ_EXAMPLES", default))


class Hang(Exception):
    """An example ran past its time bound."""


@contextlib.contextmanager
def time_bound(seconds: int = SECONDS_PER_EXAMPLE) -> Iterator[None]:
    """Raise Hang in the main thread when the block runs longer than `seconds`."""
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"example ran longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def forge_validate(*recipes: Path | str, overrides: tuple[str, ...] = ()) -> Outcome:
    """`forge validate RECIPE... [--set K=V ...]` through forge.cli.main, in this process, time-bounded.
    Any exception escaping main (a traceback for the user) fails the calling test."""
    from forge.cli import main

    argv = ["validate", *map(str, recipes)]
    for override in overrides:
        argv.append(f"--set={override}")  # = keeps a value that starts with - from reading as an option
    out, err = io.StringIO(), io.StringIO()
    with time_bound(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Outcome(code, out.getvalue(), err.getvalue())


def check_contract(outcome: Outcome) -> None:
    """Exit 0 or 2; exit 2 prints at least one problem and every stderr line has a place (or is `forge: ...`)."""
    assert outcome.code in (0, 2), f"exit {outcome.code}\n{outcome.stderr}"
    if outcome.code == 0:
        assert outcome.stderr == "", outcome.stderr
        return
    lines = outcome.stderr.split("\n")
    assert lines[-1] == "" and len(lines) > 1, f"no problem printed, or no final newline: {outcome.stderr!r}"
    for line in lines[:-1]:
        assert ISSUE_LINE.match(line) or FORGE_LINE.match(line), f"not FILE:LINE:COL: or forge: -> {line!r}"
        assert "Traceback" not in line and len(line.splitlines()) == 1, f"line breaks inside: {line!r}"


def validates_and_compiles(path: Path | str, overrides: tuple[str, ...] = ()) -> Outcome:
    """Validate; when that says ok, the recipe must also compile to a plan."""
    outcome = forge_validate(path, overrides=overrides)
    check_contract(outcome)
    if outcome.code == 0:
        from forge.plan import compile_plan
        from forge.recipe.validate import resolve

        with time_bound():
            plan = compile_plan(resolve(path, list(overrides)).recipe)
        assert plan.run_dir and plan.trainer
    return outcome
