"""One spelling on every subcommand: ``--out``, ``--steps``, ``-p KEY VALUE`` (notebook
parameters, ``run`` only), ``-P KEY=VALUE`` (template parameters), ``-q`` and ``-v``."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator

import pytest

from mnist_lambda import cli
from mnist_lambda.commands.options import steps_list

OLD_SPELLINGS = {"--output", "--step", "--param", "-o"}
RESULT_DESTS = {"out", "output", "out_dir", "output_dir", "results", "results_dir"}
"""Where a command's results go: always spelled ``--out``."""
FUNCTION_OUTPUT_PREFIXES = {"--output-prefix"}
"""``predict-batch --output-prefix``: the template's OutputKeyPrefix, under which the function
writes in S3 (``output_key``), not where the command's results go."""


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return cli.build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaves(name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parsers that take options under subcommand ``name`` (``image base``, ...)."""
    todo = [(name, _subparsers(_parser())[name])]
    while todo:
        path, parser = todo.pop()
        children = _subparsers(parser)
        if not children:
            yield path, parser
        todo += [(f"{path} {child}", sub) for child, sub in children.items()]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_has_quiet_and_verbose(name):
    for path, parser in _leaves(name):
        spelled = {s for action in _options(parser) for s in action.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= spelled, path
        args = parser.parse_args(["-q"] if path != "predict-batch" else ["s", "--out", "o", "-q"])
        assert args.quiet and not args.verbose, path


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_no_old_spelling_and_results_go_to_out(name):
    for path, parser in _leaves(name):
        for action in _options(parser):
            spelled = set(action.option_strings)
            assert not spelled & OLD_SPELLINGS, (path, action.option_strings)
            if action.dest in RESULT_DESTS:
                assert action.option_strings == ["--out"], (path, action.option_strings)
            starts_out = {s for s in spelled if s.startswith("--out")}
            assert starts_out <= {"--out", *FUNCTION_OUTPUT_PREFIXES}, (path, starts_out)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_parameters_spelled_one_way(name):
    """``-p KEY VALUE`` is a notebook parameter (``run`` only); ``-P`` is ``KEY=VALUE``."""
    for path, parser in _leaves(name):
        for action in _options(parser):
            if "-p" in action.option_strings:
                assert path == "run" and action.nargs == 2, path
            if "-P" in action.option_strings:
                assert action.metavar == "KEY=VALUE" and isinstance(
                    action, argparse._AppendAction
                ), path


def test_steps_are_comma_separated():
    assert steps_list("sample, train,,") == ["sample", "train"]
    for command in ("run", "params"):
        args = _parser().parse_args([command, "--steps", "sample,train"])
        assert args.steps == ["sample", "train"]


def test_run_takes_notebook_parameters_as_pairs():
    args = _parser().parse_args(["run", "-p", "n_samples", "100", "-p", "target", "aws", "-v"])
    assert args.params == [["n_samples", "100"], ["target", "aws"]] and args.verbose
    assert _parser().parse_args(["run"]).params == []


def test_predict_batch_needs_out_and_takes_one_of_quiet_and_verbose(capsys):
    parser = _parser()
    args = parser.parse_args(["predict-batch", "s3://b/k.npy", "--out", "p.npy", "--url", "u"])
    assert args.out == "p.npy" and args.concurrency == 4 and not args.quiet
    with pytest.raises(SystemExit):
        parser.parse_args(["predict-batch", "s3://b/k.npy", "--url", "u"])
    with pytest.raises(SystemExit):
        parser.parse_args(["predict-batch", "s", "--out", "o", "-q", "-v"])
    assert "not allowed with" in capsys.readouterr().err
