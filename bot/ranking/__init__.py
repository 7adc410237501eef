"""Ranking: topics (taxonomy, tagging), stories (same-story clusters), score (per subscriber)."""
