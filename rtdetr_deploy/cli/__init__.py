"""The command line: one module per command, each a ``main(argv) -> int`` on the frame of ``cli.frame``."""
