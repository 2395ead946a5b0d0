"""What the keys of `emp watch` do (pure): a key and the view's options in, new options out.

``q`` quits; ``tab`` cycles the panels and ``1``-``5`` pick one (1 is everything at once); ``f``
cycles the service filter through the services the fleet knows (then back to none); ``/`` opens a
prompt for a service name (``enter`` applies it, ``esc`` cancels, an empty name clears the filter);
``m`` cycles the machine filter the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

PANELS: tuple[str, ...] = ("all", "machines", "queues", "jobs", "flows")

TAB = "\t"
ENTER = ("\r", "\n")
ESC = "\x1b"
BACKSPACE = ("\x7f", "\b")


@dataclass(frozen=True)
class ViewOptions:
    """What the watcher chose to see. ``prompt`` is the filter text being typed (None: no prompt)."""

    panel: str = "all"
    service: str | None = None
    machine: str | None = None
    prompt: str | None = None
    quit: bool = False
    keys: bool = True
    """Whether keys are read (the footer lists them); `emp demo` draws the screen without reading keys."""


def _cycle(current: str | None, choices: Sequence[str]) -> str | None:
    """The next choice after ``current``; after the last one, None (no filter)."""
    if not choices:
        return None
    if current is None or current not in choices:
        return choices[0]
    i = list(choices).index(current)
    return choices[i + 1] if i + 1 < len(choices) else None


def on_key(opts: ViewOptions, key: str, services: Sequence[str] = (), machines: Sequence[str] = ()) -> ViewOptions:
    """The options after ``key`` (one character, or an escape sequence read at once)."""
    if opts.prompt is not None:
        if key in ENTER:
            return replace(opts, service=opts.prompt.strip() or None, prompt=None)
        if key.startswith(ESC):
            return replace(opts, prompt=None)
        if key in BACKSPACE:
            return replace(opts, prompt=opts.prompt[:-1])
        if key.isprintable():
            return replace(opts, prompt=opts.prompt + key)
        return opts
    if key in ("q", "Q"):
        return replace(opts, quit=True)
    if key == TAB:
        return replace(opts, panel=PANELS[(PANELS.index(opts.panel) + 1) % len(PANELS)])
    if key in ("1", "2", "3", "4", "5"):
        return replace(opts, panel=PANELS[int(key) - 1])
    if key == "/":
        return replace(opts, prompt="")
    if key == "f":
        return replace(opts, service=_cycle(opts.service, sorted(services)))
    if key == "m":
        return replace(opts, machine=_cycle(opts.machine, sorted(machines)))
    return opts
