"""The object server: its WSGI app, on-disk layer and background work."""
