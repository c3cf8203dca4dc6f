"""CLI command modules (the cli layer: nothing in the library imports these)."""
