"""Zipkku's shared library: every function and job imports the few modules it needs from here."""
