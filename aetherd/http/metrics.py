"""The HTTP side of the metrics: serving GET /metrics and recording each request.

Requests are labelled with the route template the shim matched, never the raw
path (ids in paths would make every request a new series). Requests refused
before routing (a missing token) are labelled with the route they would have
taken; requests that match no route are "unmatched".
"""

from __future__ import annotations

from aiohttp import web

from aetherd.http.routes import Route
from aetherd.http.routing import Router
from aetherd.http.urls import split_target
from aetherd.metrics import UNMATCHED, Metrics

# Served by the shim itself, like the OpenAPI document; not an RPC.
METRICS_ROUTE = Route("GET", "/metrics", "", "",
                      summary="Prometheus metrics (text exposition format).")


async def serve(request: web.Request, metrics: Metrics) -> web.Response:
    body, content_type = await metrics.render(request.headers.get("Accept", ""))
    # Set the header whole: aiohttp's content_type= does not take parameters.
    return web.Response(body=body, headers={"Content-Type": content_type})


def record(metrics: Metrics, router: Router, request: web.Request,
           response: web.StreamResponse, started: float, matched: Route | None) -> None:
    """`matched` is the route the shim dispatched to, None if it stopped earlier."""
    live = response.content_type == "text/event-stream"
    metrics.observe("http", _route_label(router, request, matched), str(response.status),
                    started, timed=not live)


def _route_label(router: Router, request: web.Request, route: Route | None) -> str:
    if route is None:
        # Only requests refused before routing get here, so routing twice costs
        # nothing on the paths that matter.
        try:
            route = router.resolve(request.method, split_target(request.raw_path)[0]).route
        except Exception:  # noqa: BLE001 - no route (404/405): one bounded label
            return UNMATCHED
    # The template's method, not the request's: HEAD is counted under GET, and
    # an arbitrary method string can never become a label value.
    return f"{route.method} {route.path}"
