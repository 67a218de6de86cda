"""The HTTP edge: the app factory, middleware, errors, bodies and the fast path."""
