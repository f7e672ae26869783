"""De-identify a folder of DICOM files: where outputs may go, burned-in quarantine, the audit, the incomplete marker.

``deidentify_folder(IN_DIR, OUT_DIR, key=...)`` reads every DICOM file under ``IN_DIR`` (never writing there), applies
:func:`medsight.io.deid.deidentify_dataset` to a copy and writes it under ``OUT_DIR`` with a name made of the new
identifiers only (``<pseudonym>/study_<h>/series_<n>_<h>/<h>.dcm``).

* Locations (:func:`check_locations`): ``OUT_DIR`` may not be ``IN_DIR``, lie inside it or contain it; the audit CSV,
  the key file and the quarantine folder lie outside both (the audit and the key are never written over an input).
* Burned-in annotation risk (:func:`medsight.io.deid_profile.burned_in_risk`: BurnedInAnnotation = YES, or missing on
  US, SC, XC, OT, ES or a Secondary Capture): the header is de-identified as for any file, but the copy goes to the
  quarantine folder (default ``<OUT_DIR>_quarantine`` beside ``OUT_DIR``) with ``QUARANTINE.csv``, not to ``OUT_DIR``:
  its pixels may show a name. ``accept_burned_in`` writes such files to ``OUT_DIR`` (the user checked the pixels).
* Audit (default ``<OUT_DIR>_deid_audit.csv`` beside ``OUT_DIR``): one row per file and changed element (element path,
  tag, action, rule; never a value). Inputs are named by the SHA-256 of their bytes, not by their path (folder and
  file names often carry the patient name): ``sha256sum`` on the input finds a row.
* ``OUT_DIR/DEID_INCOMPLETE`` is written before the first file and removed when the run completes. A run that stops
  (disk full, a write error, Ctrl-C) leaves it, with a one-line error; a run that could not read some input files
  leaves it too, saying how many are missing.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import hashlib
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medsight.core.atomic import write_bytes, write_text
from medsight.errors import MedsightError, require_exists, user_error
from medsight.io.deid import DeidKey, deidentify_dataset
from medsight.io.deid_profile import VALUE_ERRORS, DeidOptions, burned_in_risk
from medsight.io.dicom import find_dicom_files, walk_files

logger = logging.getLogger(__name__)

AUDIT_COLUMNS = ("input_sha256", "output", "element", "tag", "action", "rule")
QUARANTINE_COLUMNS = ("input_sha256", "quarantined", "reason")
INCOMPLETE_MARKER = "DEID_INCOMPLETE"
QUARANTINE_REPORT = "QUARANTINE.csv"
_PSEUDONYM = re.compile(r"^ANON[0-9A-F]{10}$")


@dataclass(frozen=True)
class DeidResult:
    """What :func:`deidentify_folder` did.

    Attributes:
        written: ``(input file, output file)`` pairs written to ``OUT_DIR``.
        skipped: ``(input file, reason)`` for DICOM files that could not be read (nothing written for them).
        quarantined: ``(input file, quarantine copy, reason)`` for files with a burned-in annotation risk.
        accepted_burned_in: ``(input file, reason)`` for files with that risk written to ``OUT_DIR`` anyway.
        audit_csv: the audit file.
        quarantine_dir: the quarantine folder (``None`` when nothing was quarantined).
        incomplete_marker: ``OUT_DIR/DEID_INCOMPLETE`` when it stays (some inputs missing), else ``None``.
        ignored: number of non-DICOM files under the input folder (not copied).
    """

    written: tuple[tuple[Path, Path], ...]
    skipped: tuple[tuple[Path, str], ...]
    quarantined: tuple[tuple[Path, Path, str], ...]
    accepted_burned_in: tuple[tuple[Path, str], ...]
    audit_csv: Path
    quarantine_dir: Path | None = None
    incomplete_marker: Path | None = None
    ignored: int = 0


def default_audit_path(out_dir: str | Path) -> Path:
    """``<OUT_DIR>_deid_audit.csv`` beside the output folder (outside it: it is not part of the shared data)."""
    out = Path(out_dir)
    return out.parent / f"{out.name}_deid_audit.csv"


def default_quarantine_path(out_dir: str | Path) -> Path:
    """``<OUT_DIR>_quarantine`` beside the output folder."""
    out = Path(out_dir)
    return out.parent / f"{out.name}_quarantine"


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_locations(in_dir: str | Path, out_dir: str | Path, *, audit_csv: str | Path | None = None,
                    key_file: str | Path | None = None, quarantine_dir: str | Path | None = None,
                    overwrite: bool = False) -> None:
    """Refuse (one :class:`MedsightError` line) outputs that would mix with the input or with the shared output.

    ``OUT_DIR`` may not be ``IN_DIR``, lie inside it or contain it; the audit CSV and the key file may not lie inside
    either (so neither can replace an input file, and neither ends up in the data that is shared) nor be the same
    file; the quarantine folder may neither lie inside nor contain either folder. Without ``overwrite``, an
    ``OUT_DIR`` with files in it, an existing audit CSV or a quarantine folder with files in it (the default ones
    when ``audit_csv`` / ``quarantine_dir`` are ``None``) are refused too, unless ``OUT_DIR`` holds the
    ``DEID_INCOMPLETE`` marker of a run that did not finish (a rerun completes it).
    """
    src, dst = Path(in_dir).resolve(), Path(out_dir).resolve()
    if _within(dst, src):
        raise user_error("an output folder outside the input folder", str(out_dir), in_dir,
                         "choose OUT_DIR beside IN_DIR (the input is never modified)")
    if _within(src, dst):
        raise user_error("an output folder that does not contain the input folder", str(out_dir), in_dir,
                         "choose OUT_DIR beside IN_DIR, not above it")
    files = {"audit CSV (--audit)": audit_csv, "key file (--key)": key_file}
    for what, given in files.items():
        if given is None:
            continue
        path = Path(given).resolve()
        for folder, name in ((src, "IN_DIR"), (dst, "OUT_DIR")):
            if _within(path, folder):
                raise user_error(f"the {what} outside IN_DIR and OUT_DIR", str(given), f"{name} {folder}",
                                 "put it beside OUT_DIR, e.g. the default, and keep it apart from the shared data")
    if audit_csv is not None and key_file is not None and Path(audit_csv).resolve() == Path(key_file).resolve():
        raise user_error("different files for --audit and --key", str(audit_csv), None, "give each its own name")
    if quarantine_dir is not None:
        q = Path(quarantine_dir).resolve()
        for folder, name in ((src, "IN_DIR"), (dst, "OUT_DIR")):
            if _within(q, folder) or _within(folder, q):
                raise user_error(f"a quarantine folder apart from {name}", str(quarantine_dir), f"{name} {folder}",
                                 "choose a folder beside OUT_DIR, e.g. the default <OUT_DIR>_quarantine")
    if dst.exists() and not dst.is_dir():
        raise user_error("an output folder", "an existing file", out_dir, "choose a folder name for OUT_DIR")
    if overwrite or (dst / INCOMPLETE_MARKER).is_file():
        return
    audit = Path(audit_csv) if audit_csv is not None else default_audit_path(out_dir)
    quarantine = Path(quarantine_dir) if quarantine_dir is not None else default_quarantine_path(out_dir)
    for what, path in (("OUT_DIR", Path(out_dir)), ("the audit CSV", audit), ("the quarantine folder", quarantine)):
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            raise user_error(f"a new or empty {what} (an earlier de-identification is kept)",
                             "an existing file" if path.is_file() else "a folder with files in it", path,
                             "choose another OUT_DIR, or pass --overwrite to replace the files of the same names")


def _output_name(ds: Dataset) -> Path:
    """``<patient pseudonym>/<study>/<series>/<instance>.dcm`` from the new (already replaced) identifiers."""
    def short(uid: object, n: int) -> str:
        return hashlib.sha256(str(uid).encode()).hexdigest()[:n]

    patient = str(ds.get("PatientID", "") or "")
    try:
        series = f"{int(ds.get('SeriesNumber')):03d}_"
    except (TypeError, ValueError):
        series = ""
    return (Path(patient if _PSEUDONYM.match(patient) else "ANON") / f"study_{short(ds.get('StudyInstanceUID'), 8)}"
            / f"series_{series}{short(ds.get('SeriesInstanceUID'), 8)}" / f"{short(ds.get('SOPInstanceUID'), 16)}.dcm")


def _read(path: Path) -> tuple[str, Dataset | None, str]:
    """``(SHA-256 prefix of the bytes, data set, "")``, or ``(prefix or "", None, why)`` when it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return "", None, f"unreadable file ({exc.strerror or type(exc).__name__})"
    digest = hashlib.sha256(raw).hexdigest()[:16]
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        if "SOPInstanceUID" not in ds:
            raise InvalidDicomError("no SOPInstanceUID")
    except (InvalidDicomError, EOFError, OSError) + VALUE_ERRORS as exc:
        return digest, None, f"unreadable DICOM ({type(exc).__name__})"
    return digest, ds, ""


def encode_dataset(ds: Dataset) -> bytes:
    """``ds`` as the bytes of a DICOM file (zero preamble as set by de-identification, file meta).

    Encoding in memory keeps pydicom's errors on odd values apart from disk errors: pydicom re-raises errors inside
    its writer as new exceptions with a traceback in the message (an ``OSError`` loses its errno there).
    """
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_output(data: bytes, target: Path) -> None:
    """Write one output file atomically (the one place deid writes a DICOM file)."""
    write_bytes(target, data)


def _csv(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _marker_text(started: str, missing: int = 0, total: int = 0) -> str:
    if missing:
        return (f"medsight deid (started {started}) could not read {missing} of {total} input DICOM file(s): they are "
                "not in this folder (the audit CSV names them by SHA-256). The rest is complete and de-identified.\n")
    return (f"This folder is INCOMPLETE: medsight deid started writing here at {started} and did not finish.\n"
            "Do not use or share it as it is: delete the folder and run medsight deid again.\n")


def _os_error(exc: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in the cause chain of ``exc`` (pydicom and atomic writes wrap them)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _incomplete_error(exc: BaseException, done: int, total: int, out: Path) -> MedsightError:
    """The one-line error of a run that stopped while writing (disk full or another write error)."""
    cause = _os_error(exc)
    fix = f"delete {out} and run again ({INCOMPLETE_MARKER} in it marks the run as incomplete)"
    if cause is not None and cause.errno == errno.ENOSPC:
        return user_error("free disk space for the de-identified files",
                          f"'no space left on device' after {done} of {total} file(s)", out, "free some space, " + fix)
    reason = (cause.strerror if cause is not None and cause.strerror else str(exc).splitlines()[0] if str(exc) else
              type(exc).__name__)
    return user_error("the de-identified files to be written", f"'{reason}' after {done} of {total} file(s)", out,
                      "fix the cause, " + fix)


def deidentify_folder(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    key: DeidKey | None = None,
    options: DeidOptions | None = None,
    audit_csv: str | Path | None = None,
    quarantine_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> DeidResult:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir`` (see the module docstring).

    Args:
        in_dir: folder searched recursively; nothing in it is modified.
        out_dir: output folder (apart from ``in_dir``).
        key: the secret for UIDs, pseudonyms and date shifts (default: a new random one, so UIDs stay consistent
            within this run only).
        options: the PS3.15 options (:class:`DeidOptions`; default: Basic Profile, burned-in risk quarantined).
        audit_csv: where to write the audit (default :func:`default_audit_path`).
        quarantine_dir: where files with a burned-in annotation risk go (default :func:`default_quarantine_path`).
        progress: ``progress(done, total)`` after each file.
        overwrite: write into an ``out_dir`` with files in it and replace an existing audit CSV (see
            :func:`check_locations`; files of the same names are replaced, each atomically, others are left).

    Returns:
        The :class:`DeidResult`.

    Raises:
        MedsightError: bad locations, no DICOM files, or a write that failed midway (``DEID_INCOMPLETE`` stays).
    """
    src = require_exists(in_dir, "input folder")
    if not src.is_dir():
        raise user_error("an input folder", "a file", src, "pass the folder holding the DICOM files")
    dst = Path(out_dir)
    options = options or DeidOptions()
    audit = Path(audit_csv) if audit_csv is not None else default_audit_path(dst)
    quarantine = Path(quarantine_dir) if quarantine_dir is not None else default_quarantine_path(dst)
    check_locations(src, dst, audit_csv=audit, quarantine_dir=quarantine, overwrite=overwrite)
    key = key or DeidKey.generate()
    files = find_dicom_files(src)
    if not files:
        raise user_error("DICOM files in the input folder", "none", src, "point at the folder exported from PACS")
    ignored = sum(1 for _ in walk_files(src)) - len(files)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    marker = dst / INCOMPLETE_MARKER
    rows: list[tuple[str, ...]] = []
    report: list[tuple[str, ...]] = []
    written: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    quarantined: list[tuple[Path, Path, str]] = []
    accepted: list[tuple[Path, str]] = []
    done = 0
    try:
        write_text(marker, _marker_text(started))
        for i, path in enumerate(files):
            digest, ds, reason = _read(path)
            if ds is None:
                skipped.append((path, reason))
                rows.append((digest, "", "", "", "skipped", reason))
                logger.warning("%s: %s, not written", path, reason)
                continue
            risk = burned_in_risk(ds)
            try:
                changes = deidentify_dataset(ds, key, options)
                data = encode_dataset(ds)
            except VALUE_ERRORS as exc:
                reason = f"could not be de-identified ({type(exc).__name__})"
                skipped.append((path, reason))
                rows.append((digest, "", "", "", "skipped", reason))
                logger.warning("%s: %s, not written", path, reason)
                continue
            rel = _output_name(ds)
            held = risk is not None and not options.accept_burned_in
            target = (quarantine if held else dst) / rel
            write_output(data, target)
            done += 1
            if risk is not None and held:
                quarantined.append((path, target, risk))
                report.append((digest, str(rel), risk))
                rows.append((digest, "", "", "", "quarantined", risk))
            else:
                written.append((path, target))
                if risk is not None:
                    accepted.append((path, risk))
                    rows.append((digest, str(rel), "", "", "burned-in risk accepted", risk))
            out_rel = "" if held else str(rel)
            rows.extend((digest, out_rel, *change) for change in changes)
            if progress is not None:
                progress(i + 1, len(files))
        write_text(audit, _csv(AUDIT_COLUMNS, rows))
        if report:
            write_text(quarantine / QUARANTINE_REPORT, _csv(QUARANTINE_COLUMNS, report))
        if skipped:
            write_text(marker, _marker_text(started, len(skipped), len(files)))
        else:
            marker.unlink()
    except (OSError, MedsightError) as exc:
        if isinstance(exc, MedsightError) and _os_error(exc) is None:
            raise
        raise _incomplete_error(exc, done, len(files), dst) from exc
    return DeidResult(tuple(written), tuple(skipped), tuple(quarantined), tuple(accepted), audit,
                      quarantine if quarantined else None, marker if skipped else None, ignored)


__all__ = ["AUDIT_COLUMNS", "INCOMPLETE_MARKER", "QUARANTINE_COLUMNS", "QUARANTINE_REPORT", "DeidResult",
           "check_locations", "default_audit_path", "default_quarantine_path", "deidentify_folder", "encode_dataset",
           "write_output"]
