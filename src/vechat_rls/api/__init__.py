"""The edges: the Litestar app, thin HTTP controllers over chat/, the WebSocket endpoint, and
the one place that turns errors into problems and error frames (problems.py)."""
