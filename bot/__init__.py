"""tiaojie bot package."""
