"""Unlearning methods for class-conditional diffusion models (task ``generation``).

One file per method, registered in the same method registry as the classifier methods with
``task="generation"``. The shared loop (``common.py``) follows OPTML-Group/Unlearn-Saliency
``DDPM/runners/diffusion.py: saliency_unlearn``: each step one retain batch and one forget batch,
``loss = forget_loss + alpha * retain_loss``, Adam (lr 1e-4), gradient-norm clip 1.0, then the
saliency mask on the gradients. Differences from the reference code are listed in
docs/generation.md.
"""

from unlearnbench.unlearn.diffusion import (  # noqa: F401  (registration side effects)
    esd,
    finetune,
    grad_ascent,
    random_label,
    retrain,
    salun,
    selective_amnesia,
)
