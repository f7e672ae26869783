"""``medsight serve``: a local web viewer and inference service over trained runs.

Pieces (one concept per module):

* :mod:`~medsight.serve.config` - :class:`ServeConfig`, the one source of the server's settings;
* :mod:`~medsight.serve.security` - access token, allowed roots (no path outside them is read), request checks;
* :mod:`~medsight.serve.uploads` - size-limited, type-checked uploads and safe extraction of zipped DICOM series;
* :mod:`~medsight.serve.runs` - the run folders served, their metrics and validation cases;
* :mod:`~medsight.serve.jobs` - prediction jobs run one at a time by a worker thread;
* :mod:`~medsight.serve.volumes` - images, label maps and heat maps as compact binaries and windowed slice PNGs;
* :mod:`~medsight.serve.app` and :mod:`~medsight.serve.routes` - the FastAPI application and its REST API;
* ``static/`` - the browser viewer (plain HTML, JavaScript and CSS; no build step, nothing fetched from a CDN).

``create_app(ServeConfig(runs=(Path("runs/hippo"),)))`` returns the ASGI application; the command line runs it with
uvicorn.
"""

from __future__ import annotations

from medsight.serve.app import create_app
from medsight.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
