"""tiaojie actions package."""
