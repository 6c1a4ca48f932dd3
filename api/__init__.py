"""The HTTP face of the platform: Flask only, no business logic."""
