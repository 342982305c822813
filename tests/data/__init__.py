"""Tests of benloss.data (the data stage)."""
