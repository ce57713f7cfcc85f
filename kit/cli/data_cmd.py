"""Placeholder until this command group lands."""

COMMANDS: list = []
