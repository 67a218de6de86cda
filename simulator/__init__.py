"""A DashScope protocol simulator: the upstream for tests, benchmarks and quota-free development."""
