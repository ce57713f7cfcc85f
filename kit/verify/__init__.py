"""Verification: reference (the band rule and reference files), judge (bit-exact, equivalent or
mismatch, with causes), artifact (a published adapter folder against its checksums)."""
