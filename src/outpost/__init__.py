"""Outpost: a capability-based credential proxy for AI agents."""

__version__ = "0.1.0"
