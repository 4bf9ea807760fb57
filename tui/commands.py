"""The command palette (ctrl+p) and the help screen share one list: every key
binding with a description, of the current screen and of the app. So every
action reachable by a key is reachable by name too."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen


def binding_entries(screen: Screen) -> list[tuple[str, Any, Binding]]:
    """(where, node, binding) for each described binding: the screen's first,
    then the app's; one entry per action (its keys joined)."""
    out: list[tuple[str, Any, Binding]] = []
    for where, node in (("screen", screen), ("app", screen.app)):
        merged: dict[str, Binding] = {}
        for binding in Binding.make_bindings(getattr(type(node), "BINDINGS", [])):
            if not binding.description:
                continue
            key = node.app.get_key_display(binding)
            if binding.action in merged:
                prev = merged[binding.action]
                merged[binding.action] = Binding(
                    prev.key, prev.action, prev.description,
                    key_display=f"{prev.key_display}/{key}")
            else:
                merged[binding.action] = Binding(binding.key, binding.action,
                                                 binding.description, key_display=key)
        out.extend((where, node, b) for b in merged.values())
    return out


class ActionsProvider(Provider):
    """Every action of the screen the palette was opened on, and the app's."""

    def _commands(self) -> Iterator[tuple[str, Any, str]]:
        for where, node, binding in binding_entries(self.screen):
            title = binding.description
            yield title, partial(node.run_action, binding.action), f"{binding.key_display} · {where}"

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
