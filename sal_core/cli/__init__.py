"""The `sal` command: one sub-command per workflow step, each a thin wrapper over a `sal_core` module.

Sub-command modules (argparse only) live beside this file and are imported only when chosen, so
`sal --help` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys

from sal_core.errors import SalError
from sal_core.hub import go_offline
from sal_core.warm_start import ENV, forked, run_forwarded

# sub-command name -> one-line help; its module is sal_core.cli.<name with "_" for "-">
COMMANDS: dict[str, str] = {
    "prepare-model": "Build a ready-to-load model folder (SmolLM2 from its GGUF, or a tiny random model).",
    "prepare-dataset": "Load a dataset (Hub, local file or built-in), normalise fields, write problems.parquet.",
    "generate": "Run one search method (Best-of-N, beam search, DVTS) on one shard of problems.",
    "score": "Score every reasoning step of a shard's completions with a process reward model.",
    "merge": "Join all scored shards of a run, checking that every problem is present exactly once.",
    "evaluate": "Grade answers and compute accuracy at n = 1, 2, 4, ... for every voting method.",
    "aggregate": "Collect the metrics of all runs into one accuracy table with seed means and spread.",
    "optimal": "Compute-optimal strategy per difficulty bin and budget, cross-validated, against Best-of-N.",
    "plot": "Draw per-model figures: accuracy vs n and tokens, gain over a baseline sampling, accuracy by level.",
    "push": "Upload merged results to the Hugging Face Hub as dataset configs (optional).",
    "missing": "Summarise the jobs a grid still has to run, by run (from `snakemake -n`).",
    "serve": "Serve a policy model behind the OpenAI completions API, for `backend: openai` jobs to share.",
    "serve-prm": "Serve a process reward model over HTTP, for `type: server` PRMs to share.",
    "label-steps": "Label the steps of completions by rollouts (Math-Shepherd): stepwise data for train-prm.",
    "train-prm": "Fine-tune a token-classification PRM on stepwise data (as TRL's PRMTrainer).",
    "processbench": "Benchmark PRMs on ProcessBench: error / correct accuracy and F1 per split.",
    "announce": "Run any OpenAI-compatible server (vllm serve) on a free port with a service file, as sal serve has.",
    "with-servers": "Run a command (snakemake) with model and PRM servers started around it on this machine.",
    "warm-start": "Run a command (snakemake) whose sal steps fork from one process that has imported torch.",
    "stage-models": "Fetch the Hub models a config needs into the Hub cache, once, for jobs that run offline.",
}
#: the steps that may reach the Hub; every other step runs with the Hub offline (sal_core.hub.go_offline),
#: loading Hub models from what `sal stage-models` staged, and is the only kind a warm-start server runs
ONLINE_STEPS = ("prepare-dataset", "push", "missing", "announce", "with-servers", "warm-start", "stage-models")


def step_of(argv: list[str]) -> str | None:
    """The sub-command named in `argv` (the first argument that is not a flag)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sal",
        description="Search-and-learn steps for the Snakemake workflow. Run `sal <step> --help` for each step.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="<step>", required=True)
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and os.environ.get(ENV) and step_of(sys.argv[1:]) not in ONLINE_STEPS:
        status = run_forwarded(os.environ[ENV], sys.argv[1:])
        if status is not None:
            return status
        print(f"sal: no warm-start server answers at ${ENV}={os.environ[ENV]}; starting cold", file=sys.stderr)
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    # Parse only up to the sub-command; the sub-command's own parser handles the rest (and its --help).
    known, rest = top.parse_known_args(argv)
    help_text = COMMANDS[known.command]
    if from_command_line and known.command not in ONLINE_STEPS:  # before the step's imports read them
        go_offline()  # the process's own environment: a call from Python (tests) leaves its caller's alone
    module = importlib.import_module(f"sal_core.cli.{known.command.replace('-', '_')}")
    sub = argparse.ArgumentParser(prog=f"sal {known.command}", description=module.__doc__ or help_text)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if known.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not sys.stderr.isatty():  # a job's log (the workflow prints one line per job): the command first
        started = " (forked from the warm-start server)" if forked() else ""
        logging.getLogger("sal").info("command%s: %s", started, shlex.join(["sal", *argv]))
    try:
        status = module.run(args)
    except SalError as err:
        print(f"sal {known.command}: error: {err}", file=sys.stderr)
        return 2
    return int(status or 0)  # with-servers passes on its command's exit status
