"""Channel adapters: they turn a platform's messages into engine events and back."""
