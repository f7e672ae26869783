"""Allow ``python -m medsight``."""

from medsight.cli.app import main

raise SystemExit(main())
