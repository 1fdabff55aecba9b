"""The benchmark scripts and their modules (run from the repository root, e.g. ``python benchmarks/step_cost.py``).

- ``common``: what the scripts share (CUDA sync, the per-step timer callback, quiet SGD arguments, classifiers);
- ``kernel_ops``: kernel-launching ATen ops of one ``training_step`` (tests/test_kernel_ops.py uses it too);
- ``step_cost`` (the script) with ``step_cost_setup`` (updates, models, data), ``step_cost_memory`` (a step's
  peak memory), ``step_cost_plain`` (the plain PyTorch loop), ``step_cost_trainer`` (the timed Trainers),
  ``step_cost_runs`` (the timing harness), ``step_cost_ops`` (kernel-op counts) and ``step_cost_report``;
- ``gpu_check`` (the script) with ``gpu_check_runs`` (models, data, one timed configuration) and
  ``gpu_check_report``;
- ``claims`` (the script) with ``claims_setup`` (forget sets, groups, recipes), ``claims_workers`` (a seed's runs
  and analysis), ``claims_tuning`` (the hf-unlearn tune studies), ``claims_analysis`` (pure: selection, summaries,
  verdicts) and ``claims_report`` (docs/results.md).
"""
