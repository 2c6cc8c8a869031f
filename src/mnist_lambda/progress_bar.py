"""The one progress bar: it reads right in a terminal, in JupyterLab or VS Code, and in a report.

Where it runs decides how it shows (:func:`mode`):

- ``terminal`` (the command line): tqdm's text bar on stderr, as usual;
- ``widget`` (a notebook in a front end a person uses: JupyterLab, VS Code): tqdm's widget;
- ``final`` (a notebook run by papermill or nbconvert, whose output becomes ``report.html``):
  nothing while it runs, then one line on stdout with the bar's last state, so the executed
  notebook holds neither every refresh nor a widget frozen at 0 %.

A person's front end asks its kernel for input (``allow_stdin``); papermill and nbclient never
do, so the request being executed says which of the last two it is. :meth:`Bar.write` prints a
result line beside the bar: on stdout in a notebook (results are not errors), on stderr in a
terminal (where stdout may be piped).
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from tqdm import std

Mode = Literal["terminal", "widget", "final"]

FINAL_FORMAT = "{desc}{n_fmt}/{total_fmt} {unit} [{elapsed}, {rate_fmt}]"
"""The one line a ``final`` bar leaves: what it counted, and how fast (no bar, no refresh)."""


def _kernel_parent() -> dict[str, Any] | None:
    """The request the IPython kernel is executing, or None outside a kernel."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:  # not imported: not in a kernel
        return None
    shell = ipython_module.get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not hasattr(kernel, "get_parent"):
        return None
    try:
        return kernel.get_parent("shell") or {}
    except Exception:  # an older or unusual kernel: treat it as a batch run
        return {}


def _widgets_available() -> bool:
    return importlib.util.find_spec("ipywidgets") is not None


def mode() -> Mode:
    """How a bar shows here: ``terminal``, ``widget`` or ``final`` (see the module's doc)."""
    parent = _kernel_parent()
    if parent is None:
        return "terminal"
    interactive = bool((parent.get("content") or {}).get("allow_stdin"))
    return "widget" if interactive and _widgets_available() else "final"


class Bar:
    """A tqdm bar shown as :func:`mode` says; iterate over it, or :meth:`update` it."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        unit_scale: bool = False,
        initial: float = 0,
        disable: bool = False,
        show: Mode | None = None,
    ) -> None:
        self.mode: Mode = show or mode()
        self._iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {
            "total": total,
            "desc": desc,
            "unit": unit,
            "unit_scale": unit_scale,
            "initial": initial,
            "disable": disable,
        }
        if self.mode == "widget":
            from tqdm.notebook import tqdm as notebook_tqdm

            self._bar: std.tqdm = notebook_tqdm(**kwargs)
        elif self.mode == "final":
            self._bar = std.tqdm(file=io.StringIO(), mininterval=3600, **kwargs)
        else:
            self._bar = std.tqdm(file=sys.stderr, **kwargs)
        self._disabled = disable
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise TypeError("a Bar made without an iterable is updated, not iterated")
        try:
            for item in self._iterable:
                yield item
                self._bar.update()
        finally:
            self.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def n(self) -> float:
        return self._bar.n

    def update(self, n: float = 1) -> None:
        self._bar.update(n)

    def set_description(self, desc: str) -> None:
        """What the bar is at now (a ``final`` bar keeps the description it was made with)."""
        if self.mode != "final":
            self._bar.set_description(desc)

    def write(self, line: str) -> None:
        """A result line beside the bar: stdout in a notebook, stderr in a terminal."""
        if self.mode == "terminal":
            std.tqdm.write(line, file=sys.stderr)
        else:
            print(line, flush=True)

    def final_line(self) -> str:
        """The bar's state as one plain line (what a ``final`` bar prints when it closes)."""
        state = dict(self._bar.format_dict)
        state["prefix"] = f"{state['prefix'].rstrip(': ')}: " if state.get("prefix") else ""
        state["bar_format"] = FINAL_FORMAT
        return self._bar.format_meter(**state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        line = self.final_line() if self.mode == "final" and not self._disabled else ""
        self._bar.close()
        if line:
            print(line, flush=True)


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Bar:
    """A :class:`Bar` (``total``, ``desc``, ``unit``, ``unit_scale``, ``initial``,
    ``disable``, as tqdm's)."""
    return Bar(iterable, **kwargs)
