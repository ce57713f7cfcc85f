"""The `kit` command group: a thin layer over the stage modules, and the only place that prints.

Each command module imports heavy libraries inside its functions, so `kit --help` is instant.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from kit import __version__
from kit.cli import data_cmd, eval_cmd, gpu_cmd, model_cmd, recipes_cmd, reports_cmd, train_cmd, verify_cmd
from kit.errors import KitError, ResourceError

_OS_FIX = {errno.ENOSPC: "free some disk space, then run the command again",
           errno.EDQUOT: "free some disk space (you are over quota), then run the command again",
           errno.EFBIG: "the file would pass the size limit (the disk's, or `ulimit -f`): free space or raise it",
           errno.EROFS: "choose a folder on a writable disk",
           errno.EACCES: "choose a path you may read and write (or change its permissions)",
           errno.EPERM: "choose a path you may read and write (or change its permissions)",
           errno.ENOTDIR: "the path runs through a file: choose another path",
           errno.EISDIR: "the path is a folder: name a file",
           errno.EEXIST: "the path is taken: choose another one"}


class KitGroup(click.Group):
    """Every failure a user can cause reaches them as ONE line, exit 2, scrubbed as a report is: a
    KitError, a usage mistake (click's several lines of usage become one line and a pointer to
    --help), or the operating system saying no (a full disk, a read-only folder, a path through a
    file), which no command turns into a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except KitError as e:
            raise _scrubbed(e) from None
        except click.UsageError as e:
            command = " ".join(filter(None, [ctx.command_path, *(e.ctx.command_path.split()[1:] if e.ctx else [])]))
            raise _scrubbed(KitError(e.format_message(), fix=f"see `{command} --help`")) from None
        except OSError as e:
            fix = _OS_FIX.get(e.errno, "check the path, then run the command again")
            raise _scrubbed(ResourceError(e.strerror or str(e) or type(e).__name__, where=e.filename and str(e.filename),
                                          fix=fix)) from None


def _scrubbed(e: KitError) -> KitError:
    """The error's line without tokens, home paths, user or host names (its file keeps its path)."""
    from kit.report.scrub import private_values, scrub_path, scrub_text

    private = private_values()
    e.message = KitError.line(scrub_text(e.reason, private), e.where and scrub_path(e.where, private),
                              e.fix and scrub_text(e.fix, private))
    return e


@click.group(cls=KitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    # torch's C++ log (a rendezvous retry prints its whole C++ stack, twice) stays out of a person's
    # terminal: what fails reaches them as the kit's one line. TORCH_CPP_LOG_LEVEL=INFO shows it again.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
    missing = determinism.missing_env_switches()
    if missing and not os.environ.get("KWANZAA_KIT_NO_REEXEC"):
        os.environ.update(missing)
        os.environ["KWANZAA_KIT_NO_REEXEC"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "kit", *sys.argv[1:]])
    from kit.model import load

    load.ONE_COMMAND_PROCESS = True  # one command per process: a LoRA run may leave bitsandbytes unimported
    cli(prog_name="kit")
