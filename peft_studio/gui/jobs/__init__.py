"""Work off the GUI thread: the training worker, background jobs, and the frame budget."""
