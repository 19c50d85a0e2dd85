"""The `svdq-edge` command line: one module per command family."""
