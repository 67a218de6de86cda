"""Webhooks: where one may go (targets) and what it carries (payload, signature)."""
