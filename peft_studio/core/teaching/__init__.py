"""Lessons, exercises and shipped examples: what the seed text teaches, as data."""
