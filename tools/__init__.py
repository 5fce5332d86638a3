"""Command-line tools: the results summariser and the built-in demo."""
