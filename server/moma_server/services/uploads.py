"""Contributions: verified manifest -> upload session -> checked bytes -> stored module.

The two halves live in their own modules: :mod:`moma_server.services.upload_sessions`
(StartUpload, Upload, GetUploadStatus: sessions and their partial bytes) and
:mod:`moma_server.services.upload_finish` (FinishUpload: checks and the atomic commit).
"""

from __future__ import annotations

from moma_server.services.hub import Hub
from moma_server.services.upload_finish import UploadFinish
from moma_server.services.upload_sessions import MAX_OPEN_UPLOADS_PER_KEY, UploadSessions
from moma_server.store.models import ModuleRow


class Uploads(UploadSessions):
    """The upload half of ModuleService, independent of gRPC plumbing."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._finisher = UploadFinish(self)

    def finish(self, upload_id: str) -> ModuleRow:
        return self._finisher.finish(upload_id)


__all__ = ["MAX_OPEN_UPLOADS_PER_KEY", "Uploads"]
