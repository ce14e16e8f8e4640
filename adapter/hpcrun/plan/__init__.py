"""The launch plan: a frozen value built by pure functions, then rendered and executed."""
