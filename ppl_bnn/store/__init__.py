"""Storage of runs, below the driver: the run directory, its resume state and its samples.

* :mod:`ppl_bnn.store.rundir`: one folder per run (:class:`~ppl_bnn.store.rundir.RunDir`:
  config, command, metrics, TensorBoard events, draws, summary, the lock);
* :mod:`ppl_bnn.store.checkpoint`: checkpoints that cannot run code when read, written
  atomically (:class:`~ppl_bnn.store.checkpoint.CheckpointStore`: the latest ``keep``,
  falling back to the previous one when the latest is damaged);
* :mod:`ppl_bnn.store.samples`: the kept draws as plain ``.npz``
  (:class:`~ppl_bnn.store.samples.SampleStore`).

The store imports nothing from the layers above it (the drivers, evaluation, diagnostics,
experiments, the CLI); the state types those layers put in checkpoints are registered
with :func:`~ppl_bnn.store.checkpoint.register_state_modules`.
"""
