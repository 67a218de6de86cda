"""The ``synthgate`` command: the one place that wires the gateway and the workers."""
