"""The command line: every step and every option explains itself in ``--help``."""

from __future__ import annotations

import argparse

import pytest

from benloss.cli import parser


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_workflow_steps_are_commands():
    assert {"synth", "download", "prepare", "labels", "encode", "train", "evaluate", "statistics", "tables",
            "figures", "explain", "report"} <= set(subcommands())  # fmt: skip


@pytest.mark.parametrize("step", sorted(subcommands()))
def test_every_option_has_a_help_line(step):
    options = [a for a in subcommands()[step]._actions if a.option_strings and a.dest != "help"]
    assert options and [a.option_strings[0] for a in options if not (a.help or "").strip()] == []
