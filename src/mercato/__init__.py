"""Mercato: a commerce backend on PostgreSQL."""

__version__ = "0.1.0"
