"""Evaluation engine: metrics, membership inference, robustness metrics, reports and tracking.

- ``eval.engine.Evaluator`` / ``EvalConfig``: one forward pass per split, every metric, a Report;
- ``eval.jobs.evaluate_model`` / ``evaluate_checkpoint``: library entry points;
- ``eval.metrics.METRICS``: the metric registry (``register_metric`` to add one);
- ``eval.report.Report``: values, per-class table, ROC curves, config, provenance, JSON;
- ``eval.shadow``: LiRA / U-LiRA shadow pools (``ShadowPool``, hold-out statistics); ``eval.shadow_train``: building them (``train_pool``);
- ``eval.tracking``: MLflow (``setup``, ``log_report``, ``runs_frame``, ``load_report``).

Submodules are imported explicitly; this package stays import-light.
"""
