"""What every layer may use: files written atomically (a reader never sees half a file), and the version."""
