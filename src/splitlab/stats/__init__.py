"""Pure statistics on sufficient statistics: numpy and scipy only, no I/O."""
