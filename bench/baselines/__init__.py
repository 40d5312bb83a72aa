"""Baseline servers the suite measures the project against."""
