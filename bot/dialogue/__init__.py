"""The channel-agnostic dialogue engine: ``(state, event) → (state, replies, actions)``."""
