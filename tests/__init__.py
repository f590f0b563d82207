"""tiaojie tests."""
