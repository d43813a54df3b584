"""The training engine: configuration and presets (``config``), assembling a model, optimizer, loss, schedule and
trainer from a configuration (``assemble``), the ``Trainer`` and its lifecycle (``fit``), the callback base classes
(``callbacks``), learning-rate schedules, inference, metrics and data splits. It writes no file, renders nothing
and prints nothing: the run directory (``fmnist.rundir``) and the command line observe it through callbacks."""
