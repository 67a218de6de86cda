"""Operations: Prometheus metrics, readiness, and what waits in each pool."""
