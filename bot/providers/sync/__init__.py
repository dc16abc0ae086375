"""sync.so (Sync Labs): `client` is the wire adapter (its API, answers and the provider's contract; its
docstring is the one description of sync.so's wire format), `errors` what its refusals mean and the advice
they give, `hold` the pause on creates after a 429, `webhook` the signed deliveries.
"""

from bot.providers.sync.client import SyncProvider, idempotency_key
from bot.providers.sync.hold import HOLD_BASE_S, CreateHold

__all__ = ["HOLD_BASE_S", "CreateHold", "SyncProvider", "idempotency_key"]
