"""The HTTP API: the Litestar app (`app.py`), one module per resource, errors, security."""
