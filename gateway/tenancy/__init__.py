"""Tenancy: API keys to callers, tenants and their keys, and usage per day."""
