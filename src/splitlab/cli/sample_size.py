"""``splitlab sample-size``: units needed per variant, and days at a given traffic."""
