"""roomop validate commands (placeholder until implemented)."""
