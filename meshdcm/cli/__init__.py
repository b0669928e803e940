"""The ``meshdcm`` command (entry point :func:`meshdcm.cli.main.main`)."""
