"""The one progress bar reads right where it shows: a terminal, a person's notebook front end,
and a notebook run by papermill (whose outputs become report.html)."""

from __future__ import annotations

import sys
import types

import pytest

from mnist_lambda import progress_bar
from mnist_lambda.progress_bar import Bar


def test_a_batch_run_leaves_one_line_on_stdout_with_the_last_state(capsys) -> None:
    items = list(Bar(range(10), desc="baseline CV", unit="fold", show="final"))
    out, err = capsys.readouterr()
    assert items == list(range(10))
    assert err == ""
    assert out.startswith("baseline CV: 10/10 fold [") and out.count("\n") == 1
    assert "\r" not in out and "%" not in out and "█" not in out


def test_updates_descriptions_and_result_lines(capsys) -> None:
    with Bar(total=3, desc="MemorySize sweep", unit="setting", show="final") as bar:
        for memory in (885, 1769, 3008):
            bar.set_description(f"ours {memory} MB")
            bar.write(f"ours {memory} MB  ok")
            bar.update()
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[:3] == [f"ours {m} MB  ok" for m in (885, 1769, 3008)]
    assert out.splitlines()[3].startswith("MemorySize sweep: 3/3 setting [")


def test_a_disabled_bar_says_nothing(capsys) -> None:
    assert list(Bar(range(3), disable=True, show="final")) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")


def test_the_terminal_bar_is_tqdms_on_stderr(capsys) -> None:
    with Bar(total=2, desc="predict", show="terminal") as bar:
        bar.update(2)
        bar.write("a result")
    out, err = capsys.readouterr()
    assert out == ""
    assert "predict: 100%" in err and "a result" in err


class _Kernel:
    def __init__(self, allow_stdin: bool) -> None:
        self.allow_stdin = allow_stdin

    def get_parent(self, channel: str) -> dict:
        return {"content": {"code": "...", "allow_stdin": self.allow_stdin}}


@pytest.mark.parametrize(("allow_stdin", "expected"), [(True, "widget"), (False, "final")])
def test_the_request_being_executed_says_who_runs_the_notebook(
    monkeypatch, allow_stdin: bool, expected: str
) -> None:
    """A person's front end (JupyterLab, VS Code) allows input; papermill and nbclient never."""
    shell = types.SimpleNamespace(kernel=_Kernel(allow_stdin))
    fake = types.SimpleNamespace(get_ipython=lambda: shell)
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert progress_bar.mode() == expected


def test_outside_a_kernel_it_is_a_terminal(monkeypatch) -> None:
    fake = types.SimpleNamespace(get_ipython=lambda: None)
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert progress_bar.mode() == "terminal"
