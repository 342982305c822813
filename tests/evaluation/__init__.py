"""Tests of benloss.evaluation."""
