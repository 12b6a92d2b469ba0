"""roomop service commands (placeholder until implemented)."""
