"""``medsight serve``: a local web viewer and inference service over trained runs.

Pieces (one concept per module):

* :mod:`~medsight.serve.config` - :class:`ServeConfig`, the one source of the server's settings (safe defaults);
* :mod:`~medsight.serve.security` - access token, allowed roots (no path outside them is read), request checks,
  error messages without paths;
* :mod:`~medsight.serve.protocol` - header and body timeouts for uvicorn's HTTP protocol (slow clients cut off);
* :mod:`~medsight.serve.uploads` - size-limited, type-checked uploads and safe extraction of zipped DICOM series;
* :mod:`~medsight.serve.limits` - decompressed-size limits of every upload kind, read from headers;
* :mod:`~medsight.serve.workdir` - the locked work folder, and cleanup after a killed server;
* :mod:`~medsight.serve.store` - the SQLite job database (WAL) that outlives the process;
* :mod:`~medsight.serve.runs` - the run folders served, their metrics and validation cases;
* :mod:`~medsight.serve.jobs` - prediction jobs run one at a time by a worker thread: admission, restart, expiry;
* :mod:`~medsight.serve.volumes` - images, label maps and heat maps as compact binaries and windowed slice PNGs;
* :mod:`~medsight.serve.app` and :mod:`~medsight.serve.routes` - the FastAPI application and its REST API;
* ``static/`` - the browser viewer (plain HTML, JavaScript and CSS; no build step, nothing fetched from a CDN).

``create_app(ServeConfig(runs=(Path("runs/hippo"),)))`` returns the ASGI application (its token, generated when
the config has none, is ``app.state.medsight.token``); the command line runs it with uvicorn and
:func:`~medsight.serve.protocol.guarded_protocol`.
"""

from __future__ import annotations

from medsight.serve.app import create_app
from medsight.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
