"""Studies: unlearning methods × forget specs × seeds (× prune levels × adversarial-retain
settings), evaluated against the retrained reference and logged to MLflow as one parent run with a
nested child run per (method, spec, seed). This layer sits above ``eval``, which never imports it.

Modules: ``tasks`` (the study tasks' registry: a study file's ``task:`` picks how it is read and
run), ``config`` (the YAML, checked), ``plan`` (the jobs), ``jobs`` (what a worker runs), ``record``
(MLflow), ``run`` (the classification driver), ``generation`` and ``gen_jobs`` (studies of
conditional DDPMs, ``task: generation``), ``expected`` (the paper's numbers), ``studies/`` (shipped).

How a study runs (``run_study``):

1. **Train** (cached on disk): per seed the original model, and per (forget spec, seed) the model
   retrained without the forget set, through ``core.jobs.train_model`` with the same split. A
   checkpoint under ``work_dir/models/<dataset>-<model>/split<S>/<train-config hash>/seed<N>/``
   is reused by every later study with the same key.
2. **References**: the retrained model of each (spec, seed) is evaluated once (child run
   ``retrain``); its values are the reference every other run of that (spec, seed) is compared
   with, so attacks are never re-run on it.
3. **Methods**: the original model (child run ``original``: "before unlearning") and every
   method variant are evaluated against that reference.

Every step is a job on ``core.executor`` (in-process or Ray tasks, same functions). Jobs return
results; only this driver writes to MLflow (SQLite locks under concurrent writers), logging each
child run as soon as its job finishes. Resuming: runs are keyed (tag ``run_key``) within a study
(tag ``study_id``, a hash of the study config); running the same study again resumes its latest
parent run and skips every child run that FINISHED. A failing job is logged as a FAILED run with
its error and traceback, and the study goes on (the parent then ends FAILED, so a re-run retries
just the failures).
"""

from unlearnbench.study.config import (
    EXAMPLES_DIR,
    MethodSpec,
    StudyConfig,
    examples,
    recipe_name,
    study_from_dict,
    study_id,
    train_config,
)
from unlearnbench.study.generation import GenStudyConfig  # (importing it registers the generation task)
from unlearnbench.study.plan import EvalJob, TrainJob, model_dir, plan_jobs, rewind_path
from unlearnbench.study.run import StudyResult, preflight
from unlearnbench.study.tasks import STUDY_TASKS, load_study, run_study, study_from_data, task_of

__all__ = ["EXAMPLES_DIR", "STUDY_TASKS", "EvalJob", "GenStudyConfig", "MethodSpec", "StudyConfig", "StudyResult",
           "TrainJob", "examples", "load_study", "study_from_data", "task_of",
           "model_dir", "plan_jobs", "preflight", "recipe_name", "rewind_path", "run_study", "study_from_dict",
           "study_id", "train_config"]
