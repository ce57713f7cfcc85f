"""The `kit` command group: a thin layer over the stage modules, and the only place that prints.

Each command module imports heavy libraries inside its functions, so `kit --help` is instant.
"""

from __future__ import annotations

import os
import sys

import click

from kit import __version__
from kit.cli import data_cmd, eval_cmd, gpu_cmd, model_cmd, recipes_cmd, reports_cmd, train_cmd, verify_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kit")
def cli() -> None:
    """Re-train the Kwanzaa adapter and prove, with hashes and metrics, what you got.

    \b
    Start here:
      kit reproduce              train, evaluate, verify and report (the Kwanzaa recipe that fits
                                 this GPU; the tiny recipe on a CPU)
      kit plan                   which recipe this machine runs, and why
      kit recipes                the shipped recipes, with measured memory and time
      kit train --recipe R -o D  train one recipe (a file or a shipped name) into run directory D
      kit hash D                 recompute a run's fingerprints from its files
    """


for module in (train_cmd, data_cmd, eval_cmd, gpu_cmd, model_cmd, recipes_cmd, verify_cmd, reports_cmd):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Console entry point. PYTHONHASHSEED and CUBLAS_WORKSPACE_CONFIG only take effect if they are
    in the environment when the interpreter (and cuBLAS) start, so set them and start again once."""
    from kit import determinism

    # micro-batches of varying length fragment PyTorch's CUDA caching allocator; expandable segments
    # keep reserved memory near what is allocated (benchmarks/README.md). A user's own setting wins.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    missing = determinism.missing_env_switches()
    if missing and not os.environ.get("KWANZAA_KIT_NO_REEXEC"):
        os.environ.update(missing)
        os.environ["KWANZAA_KIT_NO_REEXEC"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "kit", *sys.argv[1:]])
    cli(prog_name="kit")
