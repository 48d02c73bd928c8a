"""``python -m cio_relay`` is ``cio-relay``."""

from cio_relay.cli import main

main()
