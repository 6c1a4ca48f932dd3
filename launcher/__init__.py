"""The local embedded stack and the ``abaco`` command: outside the core, since they start
the API and the scheduler (the core imports neither)."""
