"""What the webhooks routes need for the life of the app, built once from settings."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mercato.core.config import Settings
from mercato.core.crypto import DataKeyRing
from mercato.webhooks.sender import Sender


@dataclass(frozen=True, slots=True)
class WebhookRuntime:
    ring: DataKeyRing
    # The event types one may subscribe to: every published contract, given by the
    # composition root (this context does not know the others' events).
    event_types: frozenset[str]
    sender: Sender  # for manual replays, sent from the request

    @classmethod
    def from_settings(cls, settings: Settings, *, event_types: Collection[str]) -> WebhookRuntime:
        assert settings.data_keys is not None, "settings.with_local_secrets() fills it"
        return cls(
            ring=DataKeyRing.parse(settings.data_keys.get_secret_value()),
            event_types=frozenset(event_types),
            sender=Sender.from_settings(settings),
        )

    async def close(self) -> None:
        await self.sender.close()
