"""Engines: one small Protocol per kind, one file per engine."""
