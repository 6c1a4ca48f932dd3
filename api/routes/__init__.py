"""Route modules, one per resource; each exposes ``bp``, a Blueprint."""
