"""A Customer.io emulator: the Track v1/v2 and App APIs with their auth, limits, error shapes,
regions and reporting webhooks, in memory, for tests, benchmarks and sandbox mode.

It is a test tool: it binds 127.0.0.1 by default and its ``/_emulator/`` inspection and fault
API needs no credentials. It is an independent stand-in: it does not import the client's request
building or limit checks (``cio_relay.operations``, ``cio_relay.customerio``), so a bug in those
cannot hide behind the same bug here.

    from cio_relay.emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(site_id="s", track_api_key="k")) as server:
        ...  # point clients at server.url; inspect server.url + "/_emulator/people"
"""

from .app import Emulator, create_app
from .config import EmulatorConfig
from .server import EmulatorServer, serve_forever
from .state import EmulatorState

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "create_app",
    "serve_forever",
]
