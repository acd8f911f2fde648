"""Small things a new user meets first: `forge --version`, usage errors that name only what is missing."""
from __future__ import annotations

import pytest

import forge
from forge.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"forge {forge.__version__}\n"


@pytest.mark.parametrize("argv", [["data", "preview"], ["run"], ["plan"], ["eval"], ["serve"]])
def test_a_missing_recipe_is_the_only_required_argument_named(argv: list[str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """KEY=VALUE overrides are optional: the usage error must not call them required."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err.splitlines()[0].startswith(f"usage: forge {' '.join(argv)} ") and "[KEY=VALUE ...]" in err
    assert "the following arguments are required: " in err and "KEY=VALUE" not in err.splitlines()[-1]
