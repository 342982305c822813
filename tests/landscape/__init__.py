"""Tests of benloss.landscape."""
