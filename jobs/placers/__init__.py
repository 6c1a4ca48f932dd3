"""Placers: where workers live (see ``local.LocalPlacer``)."""
