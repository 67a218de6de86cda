"""The web console: a playground for tenants and an admin page, static files the gateway
serves at ``/console/`` (``site.py``), calling the same APIs as every other client."""
