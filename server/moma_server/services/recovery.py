"""Start-up reconciliation of the blob store with the metadata after a crash or a restart.

What can be left behind and what happens to it:
  * a committed blob no module row refers to (crash between rename and commit): moved out
    of the store to ``<store>/orphaned/`` (not deleted: if the hub was pointed at the wrong
    database, the operator gets the modules back by hand);
  * a module row whose blob is missing: logged as an error (data loss the operator must see);
  * a temp blob with no upload session (session finished, failed or discarded): removed;
  * an expired session: removed with its temp blob;
  * a live session: kept with its partial bytes, so the contributor can resume;
  * nonces older than twice the time tolerance: forgotten (their time check refuses them);
  * the audit log's hash chain is verified; a broken chain is logged as an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from moma.trust.canonical import format_utc
from moma_server.services.hub import Hub
from moma_server.store.metadata import utc_now

log = logging.getLogger("moma_server")


@dataclass
class RecoveryReport:
    orphan_blobs: int = 0
    missing_blobs: int = 0
    pruned_nonces: int = 0
    audit_entries: int = 0
    audit_broken: str = ""
    stale_temps: int = 0
    expired_sessions: int = 0
    live_sessions: int = 0


def recover(hub: Hub) -> RecoveryReport:
    """Make the stores consistent; returns what was cleaned (also logged)."""
    report = RecoveryReport()
    meta, blobs = hub.metadata, hub.blobs
    known = meta.module_ids()
    present = set(blobs.list_blobs())
    for sha in sorted(present - known):
        blobs.quarantine(sha)
        report.orphan_blobs += 1
    missing = sorted(known - present)
    report.missing_blobs = len(missing)
    if missing:
        log.error("%d module(s) in the database have no blob in the store (first: %s): "
                  "restore the store from a backup", len(missing), missing[0])
    now = utc_now()
    live: set[str] = set()
    for row in meta.list_uploads():
        if row.expires_at < now:
            meta.delete_upload(row.upload_id)
            blobs.discard_temp(row.upload_id)
            report.expired_sessions += 1
        else:
            live.add(row.upload_id)
    report.live_sessions = len(live)
    horizon = datetime.now(UTC) - timedelta(seconds=2 * hub.config.tolerance_s + 60)
    report.pruned_nonces = meta.prune_nonces(format_utc(horizon))
    try:
        report.audit_entries = meta.verify_audit()
    except ValueError as exc:  # serve anyway: refusing to start would hide the hub, not fix it
        report.audit_broken = str(exc)
        log.error("the audit log does not verify: %s; investigate before trusting its history",
                  exc)
    for upload_id in blobs.temp_ids():
        if upload_id not in live:
            blobs.discard_temp(upload_id)
            report.stale_temps += 1
    log.info("start-up recovery: %s", report)
    return report
