"""Sequential testing: look at a running experiment as often as you like without inflating errors."""
