"""The core of the platform: settings, models, storage, runners and the worker.

Nothing here imports Flask or the scheduler; ``api`` and ``scheduler`` build on it.
"""
