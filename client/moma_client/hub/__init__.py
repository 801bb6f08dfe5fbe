"""The hub client: pinned hub identity, verified listings and cards, a download cache keyed
by sha256, and resumable signed contributions (see DESIGN.md sections 6 and 7)."""

from moma_client.hub.cache import Fetched, ModuleCache, default_cache
from moma_client.hub.candidates import HubCandidates, fetch_candidates
from moma_client.hub.client import HubCard, HubClient, VerifiedRecord
from moma_client.hub.connection import HubError, Transport, observe_channels
from moma_client.hub.pinning import known_hubs_path, parse_hub_key, pin_hub_key
from moma_client.hub.upload import Contribution, contribute

__all__ = [
    "Contribution",
    "Fetched",
    "HubCandidates",
    "HubCard",
    "HubClient",
    "HubError",
    "ModuleCache",
    "Transport",
    "VerifiedRecord",
    "contribute",
    "default_cache",
    "fetch_candidates",
    "known_hubs_path",
    "observe_channels",
    "parse_hub_key",
    "pin_hub_key",
]
