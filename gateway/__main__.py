"""`python -m gateway` is the `dma-gateway` command."""

from gateway.cli import main

raise SystemExit(main())
