"""Lip-sync engines: a prepared avatar plus speech to a talking video."""
