"""Tests of benloss.report."""
