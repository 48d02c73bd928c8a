"""Direct routes: the ingestion API found by one dictionary lookup, not by Starlette's router.

Starlette's router tries each route's regular expression in turn, and its exception middleware
and a ``send`` wrapper per layer come with every request; for the ingestion API, the service's
hot path, that was a fair share of a request's cost. ``RequestIdMiddleware`` asks this table
first: a route found here is answered by its endpoint's ``respond`` (request ids, log binding,
tracing and a JSON 500 for an unexpected error are the middleware's, as for every request);
everything else goes on to Starlette's middleware and router.

The routes stay in the app's route table too: the router still answers them when the direct
match does not apply (a ``root_path``) and answers 405 for their other methods.

Both match on the server's decoded ``path``; the endpoints take a path id from ``raw_path``
(``ingest.path_id``), so what is matched here and what is stored cannot differ either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, cast, runtime_checkable

from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

__all__ = ["DirectEndpoint", "DirectRoutes"]

# A templated path as its segments, the parameter segment as None: ("", "v1", "people", None).
_Template = tuple[str | None, ...]


@runtime_checkable
class DirectEndpoint(Protocol):
    """An endpoint that can answer without sending: the caller sends what it returns."""

    async def respond(self, scope: Scope, receive: Receive) -> Response | None:
        """The answer; None when there is nobody left to answer (the client went away)."""
        ...


class DirectRoutes:
    """Routes whose endpoints are ``DirectEndpoint``s, matched exactly on method and path.

    A route's path may hold one parameter, a whole segment with the default ``str`` converter
    (``/v1/people/{id}/events``): any other form is refused when the table is built, so that
    a request can never match here differently from the router.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        self._exact: dict[tuple[str, str], Route] = {}
        self._templated: dict[tuple[str, _Template], tuple[Route, str]] = {}
        self._parameter_at: set[int] = set()
        for route in routes:
            self._add(route)

    def _add(self, route: Route) -> None:
        if not isinstance(route.endpoint, DirectEndpoint):
            raise TypeError(f"{route.path}: the endpoint has no respond(scope, receive)")
        segments = route.path.split("/")
        parameters = [i for i, segment in enumerate(segments) if "{" in segment]
        methods = route.methods or ()
        if not parameters:
            for method in methods:
                self._exact[(method, route.path)] = route
            return
        index = parameters[0]
        name = segments[index][1:-1]
        if len(parameters) > 1 or segments[index] != f"{{{name}}}" or not name.isidentifier():
            raise ValueError(f"not a route for direct dispatch: {route.path}")
        template: _Template = (*segments[:index], None, *segments[index + 1 :])
        for method in methods:
            self._templated[(method, template)] = (route, name)
        self._parameter_at.add(index)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route and its path parameters, or None for the router to decide."""
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        segments = path.split("/")
        for index in self._parameter_at:
            if index < len(segments) and segments[index]:
                template = (*segments[:index], None, *segments[index + 1 :])
                found = self._templated.get((method, template))
                if found is not None:
                    return found[0], {found[1]: segments[index]}
        return None

    def endpoint_for(self, scope: Scope) -> DirectEndpoint | None:
        """The endpoint that answers this HTTP request, with the scope filled in as the router
        would (path parameters, route, endpoint); None to leave the request to the router."""
        if scope.get("root_path"):
            return None  # the router matches on the path below it
        found = self.match(scope["method"], scope["path"])
        if found is None:
            return None
        route, scope["path_params"] = found
        scope["route"] = route  # its template names the tracing span
        scope["endpoint"] = route.endpoint
        return cast(DirectEndpoint, route.endpoint)  # checked when the table was built
