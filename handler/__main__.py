"""Run the command-line interface: `python -m handler`."""

from handler.cli import main

raise SystemExit(main())
