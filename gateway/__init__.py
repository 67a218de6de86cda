"""synthgate gateway: the DashScope-compatible HTTP edge, auth, validation and the status store."""
