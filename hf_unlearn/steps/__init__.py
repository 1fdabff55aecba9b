"""The parts a run is made of, one role each; `hf_unlearn.pipeline.Pipeline` strings them together.

- `plan`: recipe -> one `StagePlan` per training stage with its merged settings (the only place settings merge;
  validation checks the plans) and the stage's fingerprint.
- `forget`: the data splits and one forget set's run (`ForgetSetRun`: its folder, manifest, retain / forget).
- `store`: stage folders (weights, ``stage.json``), finished-stage lookup and atomic saves; it never evaluates.
- `score`: metrics of a model on a forget set's splits, cached apart from the weights (changing only
  ``evaluation`` re-scores finished stages without retraining); `hf_unlearn.report` assembles the report.
- `train`: training (or reusing) the original, the reference and one unlearning run.
"""
