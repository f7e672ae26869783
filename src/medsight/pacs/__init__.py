"""A DICOM node: search, pull and push studies on a PACS (DICOMweb and DIMSE), and a listener that segments what it
receives and sends the results back.

* :mod:`~medsight.pacs.config`: the node's settings (TOML/JSON file and flags) and the model rules;
* :mod:`~medsight.pacs.client`: the one client interface; :mod:`~medsight.pacs.dimse` (pynetdicom) and
  :mod:`~medsight.pacs.dicomweb` (dicomweb-client) implement it; :mod:`~medsight.pacs.transport` picks one;
* :mod:`~medsight.pacs.store`: the SQLite (WAL) job store, also read by the web server (``JobStore.studies``);
* :mod:`~medsight.pacs.listener`: the C-STORE SCP; :mod:`~medsight.pacs.process`: completeness and prediction of
  one series; :mod:`~medsight.pacs.node`: the worker threads and ``medsight pacs listen``.

See docs/pacs.md.
"""
