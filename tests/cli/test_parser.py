"""The parsers and the Python API come from the options dataclasses (config/commands.py)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import aekit
from aekit.cli.parser import build_parser, command_options
from aekit.config import commands as c
from aekit.config.train import TrainConfig
from aekit.core.errors import AekitError


def dests(command: str) -> dict:
    """The first argument of each destination (--no-cache comes after --cache-dir)."""
    actions: dict = {}
    for a in build_parser().subparsers[command]._actions:
        actions.setdefault(a.dest, a)
    return actions


@pytest.mark.parametrize("command", list(c.COMMANDS))
def test_every_option_field_is_a_flag_with_its_help(command):
    actions = dests(command)
    for f in dataclasses.fields(c.COMMANDS[command]):
        assert f.name in actions, f"{command}: no argument for {f.name}"
        assert actions[f.name].help.startswith(f.metadata["help"].split(" (default")[0])
        if "choices" in f.metadata:
            assert tuple(actions[f.name].choices) == tuple(f.metadata["choices"])


@pytest.mark.parametrize("command", c.TRAINS)
def test_training_commands_take_every_config_field(command):
    actions = dests(command)
    skip = set(c.COMMANDS[command].train_skip)
    assert {f.name for f in dataclasses.fields(TrainConfig)} - skip <= set(actions)


def test_parsed_arguments_become_the_options_dataclass():
    args = build_parser().parse_args(["score", "runs/x", "imgs", "-o", "s.csv", "--no-cache", "--quiet"])
    o = command_options(args)
    assert isinstance(o, c.ScoreOptions)
    assert (o.run, o.data, o.output, o.cache_dir, o.verbose, o.metric, o.worst) == (
        "runs/x", "imgs", "s.csv", None, False, None, 16  # metric None: the run's default score
    )  # fmt: skip
    o = command_options(build_parser().parse_args(["encode", "r", "d", "-o", "z.npy", "--cache-dir", "/c"]))
    assert (o.cache_dir, o.verbose, o.precision) == ("/c", True, "auto")
    o = command_options(build_parser().parse_args(["interpolate", "r", "a.png", "b.png", "-n", "5"]))
    assert o.steps == 5 and o.output == "interpolation.png"


def test_api_signatures_list_the_options_and_reject_unknown_ones():
    for fn, options in [(aekit.encode, c.EncodeOptions), (aekit.score, c.ScoreOptions), (aekit.sweep, TrainConfig)]:
        params = inspect.signature(fn).parameters
        assert {f.name for f in dataclasses.fields(options)} <= set(params)
    assert inspect.signature(aekit.score).parameters["worst"].default == 16
    assert inspect.signature(aekit.train).parameters["latent_dim"].default is None
    with pytest.raises(AekitError, match=r"aekit.score: unknown option\(s\) wrost; valid options: .*worst"):
        aekit.score("runs/x", "data", wrost=3)
    with pytest.raises(AekitError, match=r"aekit.train: unknown option\(s\) latent"):
        aekit.train("data", latent=3)


def test_options_check_their_choices():
    with pytest.raises(AekitError, match="unknown metric 'l3'; choose one of mse, mae, ssim"):
        c.ScoreOptions(run="r", data="d", metric="l3")
