"""Test-support helpers shared by the tiaojie test suite."""
