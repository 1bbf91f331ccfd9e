"""A fake Azure messaging namespace for tests (see namespace.py)."""
