"""HTTP blueprints: discovery, service calls, feedback, operations."""
