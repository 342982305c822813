"""Tests of benloss.explanation."""
