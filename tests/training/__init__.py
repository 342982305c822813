"""Tests of benloss.training."""
