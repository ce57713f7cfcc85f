"""kwanzaa-kit: re-train the Kwanzaa adapter and prove, with hashes and metrics, what you got.

Importing this package is cheap on purpose: torch, transformers and friends are imported inside
the functions that need them, so `kit --help` stays instant.
"""

__version__ = "0.1.0"
