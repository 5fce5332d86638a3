"""Command-line tools: the results summariser, the grid runner (sweep) and the built-in demo."""
