"""Pieces every Haneul server shares: config, time, hashing, HTTP helpers."""
