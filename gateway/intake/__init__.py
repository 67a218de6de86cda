"""Intake: a validated job's options, its pool, and the submit script that admits it."""
