"""The PACS client over DICOMweb (QIDO-RS search, WADO-RS retrieve, STOW-RS store), on ``dicomweb-client``.

Instances are retrieved in the transfer syntax the archive holds (``application/dicom; transfer-syntax=*``), so a
JPEG 2000 series is not transcoded on the way. Network and HTTP errors become one-line :class:`PacsError` s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from medsight.pacs.client import (
    RETURN_KEYS,
    PacsError,
    check_level,
    dataset_values,
    instance_path,
    save_instance,
)

STOW_BATCH = 16


class DicomWebClient:
    """QIDO/WADO/STOW against one DICOMweb root URL (e.g. Orthanc's ``http://host:8042/dicom-web``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self._client = DICOMwebClient(self.url, timeout=timeout)
        self._client.set_http_retry_params(retry=False)  # the node retries with its own back-off (store.py)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import requests

        try:
            yield
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            raise PacsError(f"Expected the DICOMweb server at {self.url} to {what}, got HTTP {code}; check the URL "
                            "and the server's log") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise PacsError(f"Expected a DICOMweb server answering at {self.url} to {what}, got "
                            f"{type(exc).__name__}; check that it runs and the URL") from exc

    def echo(self) -> None:
        with self._errors("answer a QIDO-RS query"):
            self._client.search_for_studies(limit=1)

    def find(self, level: str, query: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        level = check_level(level)
        filters = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        study = filters.pop("StudyInstanceUID", None) if level != "STUDY" else None
        series = filters.pop("SeriesInstanceUID", None) if level == "IMAGE" else None
        fields = list(RETURN_KEYS[level])
        with self._errors(f"answer a {level} query"):
            if level == "STUDY":
                found = self._client.search_for_studies(search_filters=filters, fields=fields, get_remaining=True)
            elif level == "SERIES":
                found = self._client.search_for_series(study, search_filters=filters, fields=fields,
                                                       get_remaining=True)
            else:
                found = self._client.search_for_instances(study, series, search_filters=filters, fields=fields,
                                                          get_remaining=True)
        return [dataset_values(Dataset.from_json(item), level) for item in found]

    def retrieve(self, study_uid: str, series_uid: str | None, dest: Path) -> list[Path]:
        series_list = [series_uid] if series_uid else [s["SeriesInstanceUID"] for s in self.find(
            "SERIES", {"StudyInstanceUID": study_uid})]
        written = []
        for uid in series_list:
            with self._errors(f"send series {uid}"):
                for ds in self._client.iter_series(study_uid, uid, media_types=(("application/dicom", "*"),)):
                    written.append(save_instance(ds, instance_path(dest, ds)))
        return written

    def store(self, files: Sequence[Path]) -> list[str]:
        stored: list[str] = []
        for start in range(0, len(files), STOW_BATCH):
            batch = [pydicom.dcmread(f) for f in files[start:start + STOW_BATCH]]
            with self._errors(f"store {len(batch)} instances (STOW-RS)"):
                answer = self._client.store_instances(batch)
            failed = {str(item.get("ReferencedSOPInstanceUID", "")) for item in answer.get("FailedSOPSequence", [])}
            stored += [str(ds.SOPInstanceUID) for ds in batch if str(ds.SOPInstanceUID) not in failed]
            if failed:
                raise PacsError(f"Expected {self.url} to accept every instance (STOW-RS), got {len(failed)} refused "
                                f"of {len(batch)}; see the server's log")
        return stored

    def holds(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        with self._errors("answer an instance query"):
            found = self._client.search_for_instances(study_uid, series_uid,
                                                      search_filters={"SOPInstanceUID": sop_uid})
        return any(Dataset.from_json(f).get("SOPInstanceUID") == sop_uid for f in found)


__all__ = ["STOW_BATCH", "DicomWebClient"]
