"""Command-line interface: ``seqdance <command>``; each command lives in its own module."""
