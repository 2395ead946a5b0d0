"""`emp bench`: measure emp against its speed and memory targets (runner) and show it (report)."""
