"""Image generation backends (local diffusers, upstream DashScope)."""
