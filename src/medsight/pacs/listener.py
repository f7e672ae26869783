"""The node's DICOM listener: a C-STORE (and C-ECHO) SCP that files each received instance before acknowledging it.

For every C-STORE request :class:`Listener`:

1. accepts it only on an association from an allowed calling AE title (:attr:`NodeConfig.allowed_ae`); any other
   association is rejected by pynetdicom ("calling AE title not recognised") and logged in one line;
2. decodes the data set; one that cannot be decoded (a truncated file) is refused with status 0xC210, one whose
   uncompressed pixel data is shorter than its Rows x Columns x frames say is refused with 0xA900, and its series is
   recorded ``failed`` with the reason;
3. a non-image object (no Pixel Data: SR, PDF, ...) is acknowledged but not filed, and its series is recorded
   ``failed`` with "not an image";
4. optionally de-identifies it (:func:`medsight.io.deid.deidentify_dataset`, PS3.15 Basic Profile; the key is kept in
   the node's folder), then writes it to ``incoming/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``
   atomically (temporary file, fsync, rename, fsync of the folder: :mod:`medsight.core.atomic`) and records it in the
   job store, and only then answers success (0x0000). A resent instance (same SOP Instance UID) is acknowledged
   and not filed twice.

Every line it logs names UIDs, AE titles and counts, never patient names or IDs.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from medsight.core.atomic import atomic_path, write_bytes
from medsight.errors import MedsightError, user_error
from medsight.io.deid import DeidKey, deidentify_dataset
from medsight.pacs.client import pixel_shortfall
from medsight.pacs.config import NodeConfig
from medsight.pacs.dimse import TRANSFER_SYNTAXES, VERIFICATION
from medsight.pacs.store import JobStore

logger = logging.getLogger("medsight.pacs")

SUCCESS, OUT_OF_RESOURCES, MISMATCH, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xA900, 0xC210


def series_folder(incoming: Path, study_uid: str, series_uid: str) -> Path:
    return incoming / study_uid / series_uid


class Listener:
    """The C-STORE SCP of the node, filing into ``config.workdir/incoming`` and recording in ``store``."""

    def __init__(self, config: NodeConfig, store: JobStore) -> None:
        if not config.allowed_ae:
            raise user_error("at least one allowed calling AE title (--allow-ae or [node] allowed_ae)", "none",
                             "the node configuration", "name the PACS' AE title (e.g. ORTHANC): the node accepts "
                             "associations only from the titles it is given")
        self.config = config
        self.store = store
        self.incoming = config.workdir / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._key: DeidKey | None = None
        if config.deidentify:
            self._key, created = DeidKey.load_or_create(config.deid_key or config.workdir / "deid_key.json")
            if created:
                logger.info("created the de-identification key %s (keep it apart from the de-identified data)",
                            config.deid_key or config.workdir / "deid_key.json")
        self._server: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ server
    def start(self) -> None:
        """Listen on ``config.host:config.port`` in background threads."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        ae = AE(ae_title=self.config.ae_title)
        ae.require_calling_aet = list(self.config.allowed_ae)
        ae.maximum_associations = 16
        ae.add_supported_context(VERIFICATION)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), list(TRANSFER_SYNTAXES))
        handlers: list[Any] = [(evt.EVT_C_STORE, self.handle_store), (evt.EVT_C_ECHO, lambda event: SUCCESS),
                    (evt.EVT_REQUESTED, self._on_request)]
        try:
            self._server = ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise MedsightError(f"Expected a free port {self.config.port} on {self.config.host} for the DICOM "
                                f"listener, got {exc}; pick another port (--port)") from exc
        logger.info("listening as %s on %s:%d (calling AE titles accepted: %s)", self.config.ae_title,
                    self.config.host, self.config.port, ", ".join(self.config.allowed_ae))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_request(self, event: Any) -> None:
        primitive = event.assoc.requestor.primitive  # the A-ASSOCIATE-RQ: ae_title is set only after negotiation
        calling = _ae_title(getattr(primitive, "calling_ae_title", "") or event.assoc.requestor.ae_title)
        if calling not in self.config.allowed_ae:
            logger.warning("refused an association from calling AE title %r at %s (not in allowed_ae)", calling,
                           event.assoc.requestor.address)

    # ------------------------------------------------------------------------------------------ C-STORE
    def handle_store(self, event: Any) -> int:
        """File one instance; returns the C-STORE status (see the module docstring)."""
        calling = _ae_title(event.assoc.requestor.ae_title)
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            study, series, sop = (str(ds.get(k, "") or "") for k in
                                  ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
        except Exception as exc:  # noqa: BLE001 - a data set pydicom cannot decode: refuse it, keep serving
            logger.warning("refused an instance from %s that cannot be decoded (%s)", calling, type(exc).__name__)
            return CANNOT_UNDERSTAND
        if not (study and series and sop):
            logger.warning("refused an instance from %s without Study/Series/SOP Instance UID", calling)
            return MISMATCH
        folder = series_folder(self.incoming, study, series)
        try:
            return self._file(event, ds, calling, study, series, sop, folder)
        except (MedsightError, OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            logger.warning("could not file instance %s of series %s from %s: %s", sop, series, calling,
                           str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return OUT_OF_RESOURCES

    def _file(self, event: Any, ds: Dataset, calling: str, study: str, series: str, sop: str, folder: Path) -> int:
        modality = str(ds.get("Modality", "") or "")
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            reason = (f"not an image: SOP class {pydicom.uid.UID(str(ds.get('SOPClassUID', ''))).name or '?'} "
                      f"(instance {sop}); ignored")
            logger.warning("series %s from %s: %s", series, calling, reason)
            self.store.record_refused(series_uid=series, study_uid=study, folder=folder, reason=reason,
                                      calling_ae=calling, modality=modality)
            return SUCCESS
        short = pixel_shortfall(ds)
        if short is not None:
            reason = f"truncated pixel data in instance {sop}: {short[0]} of {short[1]} bytes"
            logger.warning("refused an instance of series %s from %s: %s", series, calling, reason)
            self.store.record_refused(series_uid=series, study_uid=study, folder=folder, reason=reason,
                                      calling_ae=calling, modality=modality)
            return MISMATCH
        if self._key is not None:
            with self._lock:
                deidentify_dataset(ds, self._key)
            study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            folder = series_folder(self.incoming, study, series)
        target = folder / f"{sop}.dcm"
        if self.store.job(series) is not None and target.is_file():
            return SUCCESS  # a resend: already filed and recorded
        if self._key is not None:
            with atomic_path(target) as tmp:
                ds.save_as(tmp, enforce_file_format=True)
        else:
            write_bytes(target, event.encoded_dataset())
        new = self.store.record_instance(
            series_uid=series, study_uid=study, sop_uid=sop, path=target, folder=folder, modality=modality,
            body_part=str(ds.get("BodyPartExamined", "") or ""), description=str(ds.get("SeriesDescription", "") or ""),
            calling_ae=calling)
        if new:
            logger.debug("filed instance %s of series %s from %s", sop, series, calling)
        return SUCCESS


def _ae_title(value: Any) -> str:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.strip()


__all__ = ["Listener", "series_folder"]
