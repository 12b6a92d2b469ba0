"""roomop engine commands (placeholder until implemented)."""
