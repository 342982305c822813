"""Tests of benloss.facts."""
