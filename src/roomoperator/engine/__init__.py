"""Executing a plan: phases PLANNING to ROLLBACK, applying, verifying, retrying, rate limiting."""
