"""What Forge prints fits where it goes: tqdm bars on a terminal, whole lines (no carriage returns) in a log
that is not one; the libraries' noise the user did not cause is kept off."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from forge.console import LineProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_tqdm_bar_and_a_log_gets_lines() -> None:
    from tqdm import tqdm

    terminal = progress_bar(total=3, desc="training", file=Terminal())
    assert isinstance(terminal, tqdm)
    terminal.close()
    assert isinstance(progress_bar(total=3, desc="training", file=io.StringIO()), LineProgress)


def test_a_log_gets_a_line_per_interval_and_no_carriage_return() -> None:
    log = io.StringIO()
    bar = LineProgress(total=6, desc="training", unit="step", file=log, interval=0.0)
    for step in range(6):
        bar.set_postfix({"loss": f"{7 - step:.4f}"}, refresh=False)
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 7  # one per update (interval 0), and the last one
    assert lines[0].startswith("training: 1/6 step (") and "loss=7.0000" in lines[0]
    assert lines[-1].startswith("training: 6/6 step done (") and "loss=2.0000" in lines[-1]


def test_a_quick_transient_bar_prints_nothing_in_a_log() -> None:
    log = io.StringIO()
    for _ in LineProgress(range(50), desc="reading papers", leave=False, file=log):  # within its first interval
        pass
    assert log.getvalue() == ""


def test_a_training_log_has_whole_lines_and_the_header_once(write_recipe, fake_data: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`forge run` with stdout and stderr redirected (a batch job's log)."""
    from forge.cli import main

    recipe = write_recipe("logged")
    assert main(["run", str(recipe), "evaluation.enabled=false"]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert sum(line.startswith("forge run") for line in (out + err).splitlines()) == 1
    assert "training: 12/12 step done (" in err


NOISY_LIBRARIES = textwrap.dedent("""
    import sys
    if sys.argv[1] == "quiet":
        from forge.console import quiet_libraries
        quiet_libraries()
    import mlflow
    from mlflow import MlflowClient
    MlflowClient(tracking_uri="sqlite:///" + sys.argv[2] + "/mlflow.db").search_experiments()
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[3])
    get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    print("done")
""")


def test_library_noise_is_kept_off(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """The same calls without quiet_libraries print MLflow's INFO lines and transformers' FutureWarning (so the
    check is not empty); with it, stderr stays clean."""
    def run(mode: str) -> subprocess.CompletedProcess[str]:
        folder = tmp_path / mode
        folder.mkdir()
        # without what quiet_libraries set in this process (the CLI tests call it)
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_LOGGING_LEVEL", "PYTHONWARNINGS")}
        return subprocess.run([sys.executable, "-c", NOISY_LIBRARIES, mode, str(folder), str(tiny_llama_dir)],
                              capture_output=True, text=True, timeout=240, env=env)

    loud, quiet = run("loud"), run("quiet")
    assert loud.stdout.strip() == quiet.stdout.strip() == "done", loud.stderr + quiet.stderr
    assert "INFO mlflow" in loud.stderr and "FutureWarning" in loud.stderr
    assert "INFO" not in quiet.stderr and "Warning" not in quiet.stderr and "\r" not in quiet.stderr, quiet.stderr
