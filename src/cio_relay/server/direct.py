"""Direct dispatch: the ingestion routes found by one dictionary lookup, not by Starlette's router.

Starlette's router tries each route's regular expression in turn and then passes the request
through its exception middleware; for the ingestion API, the service's hot path, that is a fair
share of a request's cost. ``DirectRoutes`` sits inside the app's middleware (so request ids,
log binding, tracing and the 500 guard still wrap every request) and answers the routes it was
given by an exact match on method and path; everything else goes on to the router unchanged.

The routes stay in the app's route table too: the router still answers them when the direct
match does not apply (a mounted app's ``root_path``) and still answers 405 for other methods.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DirectRoutes"]

# A templated path as its segments, the one parameter segment as None: ("", "v1", "people", None).
_Template = tuple[str | None, ...]


class DirectRoutes:
    """ASGI middleware that calls ``routes``' apps directly on an exact method and path match.

    A route's path may hold one parameter, a whole segment with the default ``str`` converter
    (``/v1/people/{id}/events``): any other form is refused when the table is built, so a route
    could never match here differently from the router.
    """

    def __init__(self, app: ASGIApp, routes: Iterable[Route]) -> None:
        self.app = app
        self._exact: dict[tuple[str, str], Route] = {}
        self._templated: dict[tuple[str, _Template], tuple[Route, str]] = {}
        self._parameter_at: set[int] = set()
        for route in routes:
            self._add(route)

    def _add(self, route: Route) -> None:
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # With a root_path the router matches on the path below it: leave that case to it.
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.match(scope["method"], scope["path"])
            if found is not None:
                route, scope["path_params"] = found
                scope["route"] = route  # the route template names the tracing span
                scope["endpoint"] = route.endpoint
                await route.app(scope, receive, send)
                return
        await self.app(scope, receive, send)
