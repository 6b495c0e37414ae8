"""Upload a merged result to the Hugging Face Hub as a dataset config named after its run
(needs `huggingface-cli login` or HF_TOKEN, and the network)."""

from __future__ import annotations

import argparse

from sal_core.pipeline.push import push_merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merged", required=True, help="merged/{prm}.parquet to upload")
    parser.add_argument("--repo", required=True, help="Hub dataset repository, e.g. me/sal-results")
    parser.add_argument("--public", action="store_true", help="create the repository public (default private)")
    parser.add_argument("--receipt", required=True, help="JSON file written after a successful push")


def run(args: argparse.Namespace) -> None:
    name = push_merged(args.merged, args.repo, not args.public, args.receipt)
    print(f"pushed {args.merged} to {args.repo} as config {name}")
