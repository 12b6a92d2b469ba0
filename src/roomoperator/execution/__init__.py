"""Executing a plan: phases PLANNING .. ROLLBACK, applying, verifying, rolling back, retrying, rate limiting."""
