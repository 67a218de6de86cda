"""The HTTP service: edge, API contracts, intake, tenancy and operations (no worker code)."""
