"""``python -m audit`` runs the CLI."""

from audit.cli.main import main

raise SystemExit(main())
