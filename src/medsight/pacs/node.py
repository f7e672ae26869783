"""The DICOM node: the listener, the job store and two worker threads that move each series through its states.

:class:`Node` starts the C-STORE SCP (:mod:`medsight.pacs.listener`) and two worker threads, a watcher (steps 1
and 3) and a predictor (step 2), so that series are queued and results sent while a prediction runs. Every
``poll_seconds`` they:

1. close the reception of series that were quiet for ``quiet_seconds``: a whole series
   (:func:`medsight.pacs.process.completeness`) becomes ``queued``; an incomplete one keeps waiting, and fails
   when it is still incomplete ``series_timeout`` seconds after its first instance ("series incomplete after ...");
2. run the queued job received first: picks the rule (``[[rules]]``: Modality / BodyPartExamined / SeriesDescription;
   none matching: ``failed``, "no rule matches"), predicts (:func:`medsight.pacs.process.predict_series`), records
   the results and moves the job to ``sending`` in one transaction; a prediction error fails the job with its
   one-line reason and the node carries on;
3. send the results that are due (C-STORE or STOW-RS, ``[pacs] transport``), marking each SOP Instance UID sent as
   soon as the PACS confirmed it; on an error the job stays ``sending`` and is retried after ``retry_base * 2**n``
   seconds (at most ``retry_max``), for as long as it takes. Before resending results of a job that was tried
   before, or that a previous process left, it asks the PACS whether it already holds each instance, so that a
   crash between "stored" and "recorded" never duplicates one.

At start, jobs a killed node left ``running`` are queued again (nothing of theirs had been sent), temporaries of
interrupted writes are removed, and sending resumes. Log lines name UIDs, states and counts only.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom

from medsight.core.atomic import remove_stale_temporaries
from medsight.errors import MedsightError
from medsight.pacs.client import PacsError
from medsight.pacs.config import NodeConfig
from medsight.pacs.listener import Listener
from medsight.pacs.process import completeness, predict_series
from medsight.pacs.store import JobStore
from medsight.pacs.transport import connect

logger = logging.getLogger("medsight.pacs")


class Node:
    """The listener plus the worker, sharing one :class:`~medsight.pacs.store.JobStore`."""

    def __init__(self, config: NodeConfig, *, listen: bool = True) -> None:
        self.config = config
        self.store = JobStore(config.store_path)
        self.listener = Listener(config, self.store) if listen else None
        self.results_dir = config.workdir / "results"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fresh: set[str] = set()  # series whose results this process made and has not tried to send yet
        self._waiting: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ life
    def start(self) -> None:
        """Recover what a previous process left, start listening and working (in background threads)."""
        for folder in (self.config.workdir / "incoming").glob("*/*"):
            remove_stale_temporaries(folder)
        resumed = self.store.recover()
        if resumed:
            logger.info("resumed %d job(s) left running by a previous node", len(resumed))
        if self.listener is not None:
            self.listener.start()
        self._stop.clear()
        self._threads = [threading.Thread(target=self._loop, args=(work,), name=f"medsight-pacs-{name}", daemon=True)
                         for name, work in (("watcher", self.watch_step), ("predictor", self.predict_step))]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop listening and let the worker finish its current step."""
        if self.listener is not None:
            self.listener.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=600)
        self.store.close()

    def request_stop(self) -> None:
        """Ask the worker to stop after its current step (safe from a signal handler)."""
        self._stop.set()

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler) or the worker dies."""
        while not self._stop.is_set() and self._threads and all(t.is_alive() for t in self._threads):
            self._stop.wait(1.0)

    def _loop(self, work: Callable[[], bool]) -> None:
        while not self._stop.is_set():
            try:
                busy = work()
            except Exception:  # noqa: BLE001 - the node keeps serving; the traceback goes to the log
                logger.exception("worker step failed; continuing")
                busy = False
            if not busy:
                self._stop.wait(self.config.poll_seconds)

    # ------------------------------------------------------------------------------------------ work
    def watch_step(self, now: float | None = None) -> bool:
        """Close the reception of quiet series and send what is due; returns whether it did anything."""
        did = self.close_quiet_series(time.time() if now is None else now)
        return self.send_due() or did

    def predict_step(self) -> bool:
        """Predict the next queued job, if any; returns whether there was one."""
        job = self.store.claim_next()
        if job is None:
            return False
        self.run_job(job)
        return True

    def step(self, now: float | None = None) -> bool:
        """One round of both threads' work, in this thread (for tests and scripts)."""
        did = self.watch_step(now)
        return self.predict_step() or did

    def close_quiet_series(self, now: float) -> bool:
        did = False
        for job in self.store.jobs("received"):
            uid = job["series_uid"]
            overdue = now - job["first_at"] >= self.config.series_timeout
            if now - job["last_at"] < self.config.quiet_seconds and not overdue:
                continue
            reason = completeness(Path(job["folder"])) if now - job["last_at"] >= self.config.quiet_seconds else (
                "instances still arriving")
            if reason is None:
                self.store.set_state(uid, "queued")
                logger.info("series %s complete: %d instances, queued", uid, job["instances"])
                self._waiting.pop(uid, None)
                did = True
            elif overdue:
                why = f"series incomplete after {self.config.series_timeout:g} s: {reason}"
                self.store.set_state(uid, "failed", why)
                logger.warning("series %s failed: %s", uid, why)
                self._waiting.pop(uid, None)
                did = True
            elif self._waiting.get(uid) != reason:
                self._waiting[uid] = reason
                self.store.note_waiting(uid, f"waiting: {reason}")
                logger.info("series %s quiet but not complete (%s); waiting", uid, reason)
        return did

    def run_job(self, job: dict[str, Any]) -> None:
        """Predict one claimed (``running``) job and record its results, or fail it with the reason."""
        uid = job["series_uid"]
        rule = self.config.rule_for(job["modality"], job["body_part"], job["description"])
        if rule is None:
            why = (f"no rule matches Modality {job['modality'] or '?'}, BodyPartExamined {job['body_part'] or '?'} "
                   "and the series description")
            self.store.set_state(uid, "failed", why)
            logger.warning("series %s failed: %s", uid, why)
            return
        out = self.results_dir / uid
        shutil.rmtree(out, ignore_errors=True)
        started = time.monotonic()
        logger.info("series %s: predicting with %s (%d run(s))", uid, rule.name, len(rule.runs))
        try:
            results = predict_series(self.config, rule, Path(job["folder"]), out)
        except (MedsightError, OSError, ValueError, RuntimeError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.store.set_state(uid, "failed", f"prediction failed: {why}", rule=rule.name)
            logger.warning("series %s failed: prediction failed: %s", uid, why)
            return
        current = self.store.job(uid)
        if current is not None and current["instances"] != job["instances"]:
            self.store.set_state(uid, "received", "new instances arrived while predicting; predicting again")
            logger.info("series %s: new instances arrived while predicting; back to received", uid)
            return
        if not results:
            self.store.set_state(uid, "failed", "nothing to send (config send is empty)", rule=rule.name)
            return
        self.store.set_state(uid, "running", rule=rule.name)
        self.store.add_results(uid, [(sop, kind, str(path)) for sop, kind, path in results])
        self._fresh.add(uid)
        logger.info("series %s: %d result instance(s) written in %.1f s; sending", uid, len(results),
                    time.monotonic() - started)

    def send_due(self) -> bool:
        did = False
        for job in self.store.due_to_send():
            if self._stop.is_set():
                break
            self.send_job(job)
            did = True
        return did

    def send_job(self, job: dict[str, Any]) -> bool:
        """Send the unsent results of one ``sending`` job; returns whether it is now ``sent``."""
        uid = job["series_uid"]
        check_first = job["attempts"] > 0 or uid not in self._fresh
        self._fresh.discard(uid)
        pending = self.store.unsent(uid)
        try:
            client = connect(self.config.pacs, ae_title=self.config.ae_title)
            if check_first:
                held = [r["sop_uid"] for r in pending if _held(client, r)]
                if held:
                    self.store.mark_sent(held)
                    logger.info("series %s: the PACS already holds %d result instance(s); not resent", uid,
                                len(held))
                pending = [r for r in pending if r["sop_uid"] not in set(held)]
            for kind in ("seg", "rtstruct", "sc"):
                files = [Path(r["path"]) for r in pending if r["kind"] == kind]
                if files:
                    self.store.mark_sent(client.store(files))
        except (PacsError, MedsightError, OSError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            delay = self.store.retry_later(uid, why, base=self.config.retry_base, cap=self.config.retry_max)
            logger.warning("series %s: sending failed (%s); retrying in %.0f s", uid, why, delay)
            return False
        if self.store.finish_sending(uid):
            logger.info("series %s sent: %d instance(s) to %s", uid, len(self.store.results(uid)),
                        self.config.pacs.transport)
            return True
        return False


def serve_forever(config: NodeConfig) -> None:
    """Run a node until SIGTERM or SIGINT (``medsight pacs listen``); a SIGKILL loses nothing (see the module
    docstring)."""
    node = Node(config)
    node.start()

    def on_signal(signum: int, frame: Any) -> None:
        logger.info("stopping (signal %d)", signum)
        node.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        node.wait()
    finally:
        node.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _held(client: Any, result: dict[str, Any]) -> bool:
    ds = pydicom.dcmread(result["path"], stop_before_pixels=True)
    return bool(client.holds(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)))


__all__ = ["Node", "serve_forever"]
