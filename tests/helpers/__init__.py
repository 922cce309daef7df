"""Helpers that tests run in subprocesses (writers to crash) and the clients that drive them."""
