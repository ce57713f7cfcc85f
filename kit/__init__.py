"""kwanzaa-kit: re-train the Kwanzaa adapter and prove, with hashes and metrics, what you got.

Importing this package is cheap on purpose: torch, transformers and friends are imported inside
the functions that need them, so `kit --help` stays instant.
"""

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes tries to fetch a CPU kernel from the hub through the optional `kernels` package
# (which runs downloaded code); the kit does not install it, and the fallback is exact. Say so
# once here rather than on every run.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
