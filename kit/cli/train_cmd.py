"""`kit train` and `kit hash`."""

COMMANDS: list = []
