"""The ``haneul`` command."""
