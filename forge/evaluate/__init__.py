"""Evaluation of a fine-tuned run: perplexity, gene-name recognition, summarization and question answering,
A/B comparison with a baseline (paired bootstrap), quality gates, and a report with plots.

Importing the package is light (no torch); `evaluate_run` and `eval_command` load the heavy stack.
"""
from forge.evaluate.run import eval_command, evaluate_run

__all__ = ["eval_command", "evaluate_run"]
