"""What happens around the training step, one small collaborator each; `dcgan.train` holds the step and the loop.

- `log.TrainingLog`: metrics.jsonl rows, TensorBoard scalars and images, the progress bar.
- `samples.SampleMonitor`: the fixed-z sample grids, their diversity (a mode-collapse warning), and the figures
  (progress.gif, losses.png).
- `evaluation.BestCheckpoint`: a sample-quality metric every `eval_every` steps; keeps `best.pt`.
- `signals.GracefulStop`: SIGINT/SIGTERM finish the step and save; a second Ctrl-C stops at once.
- `rollback.NanRollback`: NaN/Inf in the losses reloads the newest checkpoint with a fresh noise stream.
- `resume.newest_state`: the checkpoint a run continues from, checked against the config it continues with.
- `speed`: the built-in precision rule (the execution plan's fallback, `dcgan.plan`), and keeping freed memory
  mapped on CPUs.
- `dry_run.dry_run`: what a run would do (data, steps, speed, duration), after one timed step, writing nothing.
"""
