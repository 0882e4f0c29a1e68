"""The container server: its WSGI app, on-disk layer and background work."""
