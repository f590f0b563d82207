"""tiaojie nlu package."""
