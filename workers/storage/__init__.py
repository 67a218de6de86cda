"""Image storage (local folder; S3 later)."""
