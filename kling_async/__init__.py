"""Asyncio client for useapi.net's Kling API v1."""

__version__ = "0.1.0.dev0"
