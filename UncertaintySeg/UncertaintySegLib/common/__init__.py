"""Shared by every stage: errors for people, progress lines, valid JSON, output folders written whole."""
