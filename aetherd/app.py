"""Wiring: open the store, build the domain services and the Api objects."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aetherd.api import Api
from aetherd.api.bus import BusApi
from aetherd.api.cache import CacheApi
from aetherd.api.core import FilesApi, PersistenceApi, Runner, SessionsApi
from aetherd.api.events import EventsApi
from aetherd.api.identity import IdentityApi
from aetherd.api.observability import ObservabilityApi
from aetherd.api.review import ReviewApi
from aetherd.api.templates import TemplatesApi
from aetherd.auth.authenticate import Authenticator
from aetherd.auth.guard import Guard, install
from aetherd.auth.ratelimit import RateLimiter
from aetherd.config import Config, install_limits
from aetherd.services.files import Files
from aetherd.services.persistence import Persistence
from aetherd.services.retention import Retention
from aetherd.services.sessions import Sessions
from aetherd.services.state import Store
from aetherd.services.tokens import Tokens
from aetherd.services.tombstones import Tombstones


@dataclass
class Daemon:
    config: Config
    store: Store
    runner: Runner
    api: Api
    authenticator: Authenticator
    retention: Retention

    def close(self) -> None:
        self.runner.shutdown()
        self.store.close()


def open_daemon(config: Config) -> Daemon:
    """Build the daemon's objects. Called from inside the event loop that will
    serve them, so live followers are woken on that loop."""
    # The services read the limits process-wide (aetherd/config.py `limits()`);
    # Config.load installs them for the daemon, this for daemons built in-process.
    install_limits(config.limits)
    store = Store(config.data_dir)
    try:
        store.hub.bind(asyncio.get_running_loop())
    except RuntimeError:  # no loop (maintenance tools): nobody follows live
        pass
    runner = Runner()
    tombstones = Tombstones(store, config.tombstone_retention_seconds)
    sessions = Sessions(store, config.import_roots,
                        host_paths_allowed=bool(config.import_roots) or not config.has_tcp_listener,
                        tombstones=tombstones)
    files = Files(store, sessions, chunk_queries=config.chunk_queries)
    persistence = Persistence(store, sessions)
    tokens = Tokens(store)
    api = Api(
        sessions=SessionsApi(sessions, runner),
        files=FilesApi(files, persistence, runner),
        persistence=PersistenceApi(persistence, runner),
        cache=CacheApi(store, runner),
        bus=BusApi(store, runner),
        events=EventsApi(store, runner),
        review=ReviewApi(store, runner),
        observability=ObservabilityApi(store, runner),
        templates=TemplatesApi(store, runner),
        identity=IdentityApi(tokens, runner),
    )
    install(api, Guard(store.db))
    limiter = RateLimiter(config.rate_limit_per_second, config.rate_limit_burst)
    return Daemon(config, store, runner, api, Authenticator(tokens, config.token, limiter),
                  Retention(sessions, tombstones))
