"""Live panes: a session's bus messages and its events, as they happen.

Each pane runs one worker that follows the daemon's server stream (SSE) —
history first, then live items, no polling — and resumes from its last
cursor when the connection breaks. Below them, a topic and a payload input
publish on the bus.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, RichLog

from aether import pb
from tui.tasks import task

PREVIEW = 200  # characters of a payload shown on its line


def bus_line(msg: pb.BusMessage, display) -> Text:
    payload = bytes(msg.payload)
    try:
        body = payload.decode("utf-8")
    except UnicodeDecodeError:
        body = f"<{len(payload)} bytes>"
    body = body.replace("\n", " ⏎ ")
    if len(body) > PREVIEW:
        body = body[:PREVIEW] + "…"
    line = Text(f"#{msg.cursor} ", style="dim")
    if not display.masked:
        line.append(display.time(msg.publish_time)[11:] + " ", style="dim")
    line.append(msg.topic, style="bold cyan")
    if msg.sender:
        line.append(f" {msg.sender}", style="magenta")
    line.append(": ")
    line.append(body)
    return line


def event_line(ev: pb.Event, display) -> Text:
    line = Text(f"#{ev.cursor} ", style="dim")
    if not display.masked:
        line.append(display.time(ev.time)[11:] + " ", style="dim")
    line.append(ev.type, style="bold yellow")
    if ev.path:
        line.append(f" {ev.path}")
    if ev.attributes and not display.masked:
        line.append(" " + " ".join(f"{k}={v}" for k, v in sorted(ev.attributes.items())),
                    style="dim")
    return line


class FollowLog(RichLog):
    """A RichLog fed by one follow stream ("bus" or "events"). Each item is
    also posted as a `FollowLog.Received` message, so that the screen can follow
    the same stream (its tree and lists) without a second connection."""

    class Received(Message):
        def __init__(self, kind: str, item: Any) -> None:
            super().__init__()
            self.kind = kind
            self.item = item  # pb.BusMessage | pb.Event

    def __init__(self, kind: str, session_id: str, **kwargs) -> None:
        super().__init__(max_lines=2000, wrap=False, markup=False, auto_scroll=True, **kwargs)
        self.kind = kind
        self.session_id = session_id
        self.received = 0  # items shown so far
        self.last_cursor = 0

    def on_mount(self) -> None:
        self.follow()

    def _add(self, item) -> None:
        display = self.app.display_opts  # type: ignore[attr-defined]
        self.write(bus_line(item, display) if self.kind == "bus" else event_line(item, display))
        self.received += 1
        self.last_cursor = item.cursor
        self.post_message(self.Received(self.kind, item))

    @task(exclusive=True, group="follow")
    async def follow(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.follow(self.kind, self.session_id, self._add, after=self.last_cursor)

    def plain_lines(self) -> list[str]:
        """The text of each line shown (for tests)."""
        return [strip.text for strip in self.lines]


class LivePanes(Vertical):
    """Bus (left) and events (right) of a session, with a publish line."""

    def __init__(self, session_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session_id = session_id

    def compose(self) -> ComposeResult:
        with Horizontal(id="live-logs"):
            with Vertical(classes="live-pane"):
                yield Label("Bus", classes="pane-title")
                yield FollowLog("bus", self.session_id, id="bus-log")
            with Vertical(classes="live-pane"):
                yield Label("Events", classes="pane-title")
                yield FollowLog("events", self.session_id, id="events-log")
        with Horizontal(id="publish"):
            yield Input(placeholder="topic", id="topic")
            yield Input(placeholder="message to publish (enter)", id="payload")

    @property
    def bus_log(self) -> FollowLog:
        return self.query_one("#bus-log", FollowLog)

    @property
    def events_log(self) -> FollowLog:
        return self.query_one("#events-log", FollowLog)

    def focus_publish(self) -> None:
        topic = self.query_one("#topic", Input)
        (self.query_one("#payload", Input) if topic.value else topic).focus()

    @on(Input.Submitted, "#topic")
    def _topic_done(self) -> None:
        self.query_one("#payload", Input).focus()

    @on(Input.Submitted, "#payload")
    def _payload_done(self, event: Input.Submitted) -> None:
        topic = self.query_one("#topic", Input).value.strip()
        if not topic:
            self.notify("A message needs a topic.", severity="warning")
            self.query_one("#topic", Input).focus()
            return
        self.publish(topic, event.value)
        event.input.value = ""

    @task(group="publish")
    async def publish(self, topic: str, payload: str) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.publish(self.session_id, topic, payload)
