"""Lightning plumbing: the training module, loggers and callbacks."""
