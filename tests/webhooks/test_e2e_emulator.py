"""End to end over real sockets: emulator sends -> signed webhooks -> receiver -> inbox ->
lake + built-in handlers.

Three transactional emails (to a normal address, a ``bounce.test`` one and a ``spam.test`` one)
are sent to the emulator's App API; the emulator posts their signed reporting webhooks to a real
``WebhookReceiver`` on 127.0.0.1; the pipeline then writes every event to a Parquet lake and the
built-ins suppress the bounced and the spam-reporting person through a real ``Relay`` (its
SQLite outbox and worker), so they end up suppressed at the emulator.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from cio_relay.config import Settings
from cio_relay.emulator import EmulatorConfig, EmulatorServer
from cio_relay.lake.parquet import ParquetLake
from cio_relay.relay import Relay
from cio_relay.webhooks.builtin import install_builtin_handlers
from cio_relay.webhooks.pipeline import WebhookPipeline
from cio_relay.webhooks.receiver import WebhookReceiver
from cio_relay.webhooks.router import Router
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.webhooks.conftest import serve

SIGNING_KEY = "e2e-signing-key"
APP_KEY = "e2e-app-key"
RECIPIENTS = {
    "user-ok": "ada@example.com",
    "user-bounce": "bob@bounce.test",
    "user-spam": "eve@spam.test",
}


def test_emulator_webhooks_land_in_the_lake_and_suppress_bounces_and_spam(
    tmp_path: Path,
) -> None:
    suppressed: list[dict[str, str]] = []
    with SQLiteInbox(tmp_path / "webhooks.db") as inbox, ParquetLake(tmp_path / "lake") as lake:
        receiver = WebhookReceiver(inbox, [SIGNING_KEY])
        app = Starlette(routes=[Route("/webhooks/customerio", receiver, methods=["POST"])])
        with serve(app) as receiver_url:
            config = EmulatorConfig(
                app_api_key=APP_KEY,
                webhook_url=f"{receiver_url}/webhooks/customerio",
                webhook_signing_key=SIGNING_KEY,
            )
            with (
                EmulatorServer(config) as emulator,
                httpx.Client(base_url=emulator.url, timeout=30) as client,
                Relay(
                    Settings(
                        site_id=config.site_id,
                        track_api_key=config.track_api_key,
                        app_api_key=APP_KEY,
                        track_url=emulator.url,
                        app_url=emulator.url,
                        outbox=f"sqlite:///{tmp_path / 'outbox.db'}",
                    )
                ) as relay,
            ):

                def suppress(identifiers: dict[str, str]) -> None:
                    suppressed.append(identifiers)
                    relay.suppress(identifiers)

                router = Router()
                install_builtin_handlers(
                    router,
                    bounce_policy="suppress",  # the reference architecture's choice, explicit
                    spam_policy="suppress",
                    suppress=suppress,
                    record_unsubscribes=False,
                )
                pipeline = WebhookPipeline(inbox, router, lake)
                for person, address in RECIPIENTS.items():
                    sent = client.post(
                        "/v1/send/email",
                        headers={"Authorization": f"Bearer {APP_KEY}"},
                        json={
                            "transactional_message_id": "welcome",
                            "to": address,
                            "identifiers": {"id": person},
                            "message_data": {"name": person},
                        },
                    )
                    assert sent.status_code == 200, sent.text
                flushed = client.post("/_emulator/webhooks/flush", params={"timeout": 60})
                assert flushed.json()["drained"] is True
                log = client.get("/_emulator/webhooks").json()

                report = pipeline.drain()
                relay.worker().drain()  # the suppressions the handlers enqueued go out
                people = {
                    person: client.get(f"/_emulator/people/{person}").json()["suppressed"]
                    for person in RECIPIENTS
                }
        assert people == {"user-ok": False, "user-bounce": True, "user-spam": True}
        # Every webhook the emulator sent was verified and acknowledged (none retried or failed).
        assert log["failed"] == 0 and {w["outcome"] for w in log["webhooks"]} == {"sent"}
        assert {w["attempts"] for w in log["webhooks"]} == {1}
        assert inbox.counts().done == len(log["webhooks"]) == 4 + 2 + 3
        assert report.lake_rows == 9 and report.handlers.done == 9

        [funnel] = lake.funnel(by="transactional", days=2)
        assert funnel.message_id == "welcome"
        assert (funnel.sent, funnel.delivered, funnel.opened, funnel.clicked) == (3, 2, 1, 1)
        assert (funnel.bounced, funnel.spammed, funnel.unsubscribed) == (1, 1, 0)
        assert funnel.delivery_rate == 2 / 3 and funnel.bounce_rate == 1 / 3
        failure = lake.query("SELECT failure_message FROM events WHERE metric = 'bounced'").rows
        assert "550" in failure[0][0]

    by_id = {ids["id"]: ids for ids in suppressed}
    assert sorted(by_id) == ["user-bounce", "user-spam"]
    assert by_id["user-bounce"]["id"] == "user-bounce"
