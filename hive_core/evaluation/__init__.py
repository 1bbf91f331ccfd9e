"""Evaluation: built-in question sets and the runner behind ``amplihack-hive eval``."""
