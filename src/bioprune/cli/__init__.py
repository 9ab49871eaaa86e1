"""The ``bioprune`` command line: one module per command, parsing and dispatch only."""
