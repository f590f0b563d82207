"""tiaojie storage package."""
