"""Forge: fine-tune language models on scientific papers from one declarative recipe."""

__version__ = "0.1.0"
