"""Intake's common plumbing: who is calling, the error path, bodies, dependencies, middleware, health."""
