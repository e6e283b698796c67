"""Training algorithms: the shared runtime plus one folder per task."""
