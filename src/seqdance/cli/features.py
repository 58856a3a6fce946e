"""``seqdance features md|nma``: dynamic features from trajectories or structures."""

from __future__ import annotations

import argparse

from seqdance.cli import features_md, features_nma


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("features", help="compute dynamic features from MD trajectories or structures")
    group = parser.add_subparsers(dest="features_command", metavar="KIND")
    features_md.register(group)
    features_nma.register(group)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
